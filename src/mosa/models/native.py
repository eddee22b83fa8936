"""LLaDA, LLaDA-1.5, MMaDA and Dream checkpoints in transformers' own modules, without remote code.

LLaDA's language model (and LLaDA-1.5's, and MMaDA's, which subclasses it) is a Llama-shaped
transformer; its weights map one to one onto `LlamaForCausalLM`:

    model.transformer.wte                 -> model.embed_tokens
    model.transformer.blocks.N.q_proj     -> model.layers.N.self_attn.q_proj   (k_proj, v_proj alike)
    model.transformer.blocks.N.attn_out   -> model.layers.N.self_attn.o_proj
    model.transformer.blocks.N.ff_proj    -> model.layers.N.mlp.gate_proj       (silu(ff_proj(x)) * up_proj(x))
    model.transformer.blocks.N.up_proj    -> model.layers.N.mlp.up_proj
    model.transformer.blocks.N.ff_out     -> model.layers.N.mlp.down_proj
    model.transformer.blocks.N.attn_norm  -> model.layers.N.input_layernorm
    model.transformer.blocks.N.ff_norm    -> model.layers.N.post_attention_layernorm
    model.transformer.ln_f / ff_out       -> model.norm / lm_head

Dream is Qwen2.5-shaped and its state dict loads into `Qwen2ForCausalLM` unchanged. Both run with
full attention (transformers' `is_causal = False`, a key-padding mask) as mask predictors, so every
transformers feature works on them: sdpa and flash attention, gradient checkpointing,
`logits_to_keep` (the sampler's fast path), `inputs_embeds`, peft LoRA on the Llama / Qwen2 names.

Two details keep the logits equal to the upstream code's (tests/models/test_native.py):
  - positions: LLaDA's code numbers every canvas position from 0, padding included; Dream's
    generation code numbers from the first real token. `BidirectionalLM(positions=...)` does each.
  - LLaDA's `rope_full_precision` (true in the released configs) rotates queries and keys in fp32
    and casts back; transformers rotates in the model's dtype. In bf16 that is a different rounding
    (max logit difference 0.06, 1% of argmaxes changed on a tiny model), so for such configs mosa
    hands the attention fp32 cos/sin and an attention function that casts the rotated queries and
    keys back to the value dtype, which is exactly LLaDA's arithmetic.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from mosa.errors import MosaError

LLADA_KEY_MAPPING = {
    r"^model\.transformer\.wte\.": "model.embed_tokens.",
    r"^model\.transformer\.ln_f\.": "model.norm.",
    r"^model\.transformer\.ff_out\.": "lm_head.",
    r"^model\.transformer\.blocks\.(\d+)\.q_proj\.": r"model.layers.\1.self_attn.q_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.k_proj\.": r"model.layers.\1.self_attn.k_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.v_proj\.": r"model.layers.\1.self_attn.v_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.attn_out\.": r"model.layers.\1.self_attn.o_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_proj\.": r"model.layers.\1.mlp.gate_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.up_proj\.": r"model.layers.\1.mlp.up_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_out\.": r"model.layers.\1.mlp.down_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.attn_norm\.": r"model.layers.\1.input_layernorm.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_norm\.": r"model.layers.\1.post_attention_layernorm.",
}

# LLaDA config options the Llama mapping reproduces, with the one value it supports. Anything else
# (alibi, a sequential block, layer norm on queries and keys, ...) needs the checkpoint's own code.
LLADA_REQUIRED = {
    "block_type": "llama",
    "rope": True,
    "alibi": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "bias_for_layer_norm": False,
    "activation_type": "silu",
    "attention_layer_norm": False,
    "input_emb_norm": False,
    "scale_logits": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "block_group_size": 1,
}

DREAM_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "tie_word_embeddings",
    "attention_dropout",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "mask_token_id",
)
SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id")


def llama_config_from_llada(raw: dict, source: str = "the checkpoint"):
    """A `LlamaConfig` with the shape of a LLaDA / MMaDA config.json; refuses options it cannot reproduce."""
    from transformers import LlamaConfig

    _require_keys(raw, ("d_model", "n_layers", "n_heads", "vocab_size"), "LLaDA", source)
    for key, supported in LLADA_REQUIRED.items():
        if key in raw and raw[key] != supported:
            raise MosaError(
                f"{source} sets {key}={raw[key]!r}; mosa's native LLaDA path supports only {supported!r}; "
                "load it with --trust-remote-code (trust_remote_code=True)"
            )
    heads = raw["n_heads"]
    kv_heads = 1 if raw.get("multi_query_attention") else (raw.get("n_kv_heads") or heads)
    config = LlamaConfig(
        vocab_size=raw.get("embedding_size") or raw["vocab_size"],  # LLaDA's embedding may be padded past vocab_size
        hidden_size=raw["d_model"],
        intermediate_size=raw.get("mlp_hidden_size") or raw["mlp_ratio"] * raw["d_model"],
        num_hidden_layers=raw["n_layers"],
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=raw.get("max_sequence_length", 4096),
        rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
        rope_theta=raw.get("rope_theta", 10000.0),
        tie_word_embeddings=bool(raw.get("weight_tying", False)),
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        **{key: raw[key] for key in SPECIAL_IDS if raw.get(key) is not None},
    )
    config.rope_full_precision = bool(raw.get("rope_full_precision", False))
    return config


def qwen2_config_from_dream(raw: dict, source: str = "the checkpoint"):
    """A `Qwen2Config` from Dream's config.json (the same keys); refuses RoPE scaling and sliding windows."""
    from transformers import Qwen2Config

    _require_keys(raw, ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"), "Dream", source)
    if raw.get("rope_scaling"):
        raise MosaError(
            f"{source} sets rope_scaling={raw['rope_scaling']!r}; the native Dream path supports plain RoPE; use --trust-remote-code"
        )
    if raw.get("use_sliding_window"):
        raise MosaError(
            f"{source} uses a sliding window; the native Dream path supports full attention only; use --trust-remote-code"
        )
    return Qwen2Config(**{key: raw[key] for key in DREAM_KEYS if raw.get(key) is not None})


def _require_keys(raw: dict, keys: tuple[str, ...], kind: str, source: str) -> None:
    missing = [key for key in keys if key not in raw]
    if missing:
        raise MosaError(
            f"{source}: config.json has no {', '.join(missing)}, so it is not a {kind}-shaped config; load it with --trust-remote-code"
        )


def native_config(family: str, raw: dict, source: str):
    """The transformers config a LLaDA / MMaDA / Dream config.json maps onto (checked before any weight loads)."""
    return qwen2_config_from_dream(raw, source) if family == "dream" else llama_config_from_llada(raw, source)


def load_native(path: str, family: str, config, *, dtype, device, attn_implementation: str | None) -> nn.Module:
    """Load a LLaDA / MMaDA / Dream checkpoint (local directory or hub id, sharded or not) into
    transformers' Llama or Qwen2 module (`config` from `native_config`), straight in `dtype`
    ("auto": the checkpoint's) on `device`."""
    model_class, attention = _model_class(family, config, attn_implementation)
    key_mapping = None if family == "dream" else LLADA_KEY_MAPPING
    module, info = model_class.from_pretrained(
        path,
        config=config,
        key_mapping=key_mapping,
        dtype=dtype,
        device_map={"": str(device)},
        attn_implementation=attention,
        output_loading_info=True,
    )
    _check_loading_info(info, path, family)
    return _as_mask_predictor(module, family, config)


def random_native(
    family: str, raw: dict, *, dtype=torch.bfloat16, device="cpu", attn_implementation: str | None = None, seed: int = 0
) -> nn.Module:
    """A randomly initialised native module of a config.json's shape, wired exactly as a loaded one
    (benchmarks and GPU checks of the true LLaDA-8B shape need no weights)."""
    config = native_config(family, raw, "the given config")
    model_class, attention = _model_class(family, config, attn_implementation)
    torch.manual_seed(seed)
    with torch.device(device):
        module = model_class._from_config(config, dtype=dtype, attn_implementation=attention)
    return _as_mask_predictor(module, family, config).eval()


def _model_class(family: str, config, attn_implementation: str | None):
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    attention = attn_implementation or "sdpa"
    if getattr(config, "rope_full_precision", False):
        attention = full_precision_rope_attention(attention)
    return (Qwen2ForCausalLM if family == "dream" else LlamaForCausalLM), attention


def _as_mask_predictor(module: nn.Module, family: str, config) -> nn.Module:
    from mosa.models.wrappers import BidirectionalLM

    if getattr(config, "rope_full_precision", False):
        module.model.rotary_emb = FullPrecisionRotary(module.model.rotary_emb)
    return BidirectionalLM(module, positions="from_mask" if family == "dream" else "absolute")


def _check_loading_info(info: dict, path: str, family: str) -> None:
    """transformers initialises missing weights at random and drops unknown ones with a warning; a
    mask predictor with random layers would sample nonsense silently, so both stop the load."""
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(str(item[0] if isinstance(item, tuple) else item) for item in info.get("mismatched_keys") or [])
    for problem, keys in (("lacks", missing), ("has unknown", unexpected), ("has wrongly shaped", mismatched)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise MosaError(
                f"{path} {problem} weights for a {family} model ({shown}); it is not the shape its config.json says; "
                "load it with --trust-remote-code if it is a variant"
            )


class FullPrecisionRotary(nn.Module):
    """transformers' rotary embedding, returning cos/sin in fp32 whatever the model's dtype, so that
    queries and keys are rotated in fp32 (LLaDA's `rope_full_precision`)."""

    def __init__(self, rotary: nn.Module):
        super().__init__()
        self.rotary = rotary

    def forward(self, x, position_ids):
        return self.rotary(x.float(), position_ids)


def full_precision_rope_attention(base: str) -> str:
    """Register (once) an attention implementation that casts fp32-rotated queries and keys back to
    the value dtype, then runs `base` (sdpa, eager, flash_attention_2, ...). Returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.llama.modeling_llama import eager_attention_forward

    name = f"mosa_rope32_{base}"
    if name in ALL_ATTENTION_FUNCTIONS:
        return name
    if base != "eager" and base not in ALL_ATTENTION_FUNCTIONS:
        raise MosaError(f"attn_implementation={base!r} is unknown to transformers; use sdpa, eager or a flash_attention_* name")
    attend = eager_attention_forward if base == "eager" else ALL_ATTENTION_FUNCTIONS[base]

    def attention(module, query, key, value, *args, **kwargs):
        return attend(module, query.to(value.dtype), key.to(value.dtype), value, *args, **kwargs)

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name


def read_config(path: str) -> dict:
    """config.json of a local checkpoint or a hub id (through the Hugging Face cache), as a dict."""
    from transformers import PretrainedConfig

    local = Path(path).expanduser()
    if local.is_file():
        raise MosaError(f"cannot load {path}: it is a file; give the checkpoint's directory")
    if local.is_dir() and not (local / "config.json").is_file():
        raise MosaError(f"no config.json in {path}; give a Hugging Face checkpoint directory")
    if not local.exists() and not is_hub_id(path):
        raise MosaError(
            f"cannot load {path}: no such directory, and not a hub id (owner/name); give a checkpoint directory or a hub id"
        )
    if not local.exists() and local.parent.is_dir() and local.parent != Path("."):
        # runs/mosa-typo is spelt like a hub id, but runs/ is here: a mistyped local path, not a
        # download (with no network, the hub's retries would take half a minute before failing).
        raise MosaError(
            f"cannot load {path}: no such directory in {local.parent}/ (a local folder, so {path} is not read as a hub id); "
            "give an existing checkpoint directory"
        )
    try:
        return PretrainedConfig.get_config_dict(str(local) if local.is_dir() else path)[0]
    except OSError as error:
        where = "" if local.exists() else "no such directory, and from the hub: "
        raise MosaError(f"cannot load {path}: {where}{str(error).splitlines()[0]}") from None


def is_hub_id(name: str) -> bool:
    """owner/name as the Hugging Face hub spells a model id (what a local path that does not exist
    is tried as); a path such as ./runs/x or ~/models/x never is one."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith(("/", ".", "~")) or name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def family_of(raw: dict) -> str | None:
    """The family a config.json names, or None."""
    model_type = re.sub(r"[^a-z0-9]", "", str(raw.get("model_type", "")).lower())
    return {"llada": "llada", "mmada": "mmada", "dream": "dream", "llama": "bidirectional"}.get(model_type)
