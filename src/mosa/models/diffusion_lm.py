"""One interface for masked-diffusion LMs, and loading checkpoints of each family.

    lm = load_model("GSAI-ML/LLaDA-8B-Instruct", dtype="bfloat16", device="cuda")
    ids, mask = lm.encode_chat(["How do magnets work?"])
    out = generate(lm.module, ids, mask, config=lm.sampler_config(gen_length=128))

Families:
  llada / mmada   transformers' Llama with full attention (mosa.models.native); with
                  trust_remote_code, the checkpoint's own code made to run on current transformers
  dream           transformers' Qwen2 with full attention, or its own code; logits shifted by one
  bidirectional   any Hugging Face Llama checkpoint run with full attention (tests, the organism)
Special ids come from the tokenizer and config, never from constants. Every load ends with a check
that the logits are finite and the rotary tables are what the config says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mosa.errors import MosaError
from mosa.models.chat_templates import BIDIRECTIONAL_TEMPLATE, DREAM_TEMPLATE, LLADA_TEMPLATE, render_conversation
from mosa.models.native import family_of, load_native, native_config, read_config
from mosa.models.wrappers import BidirectionalLM, DreamLM
from mosa.progress import route_transformers_bars
from mosa.sampling import SamplerConfig, aligned_logits, generate


@dataclass(frozen=True)
class Family:
    name: str
    logits_shifted: bool
    chat_template: str
    # Looked up by name in the tokenizer (the config's mask_token_id wins for the mask).
    mask_token: str
    eos_token: str
    eot_token: str


FAMILIES = {
    "llada": Family("llada", False, LLADA_TEMPLATE, "<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>"),
    "mmada": Family("mmada", False, LLADA_TEMPLATE, "<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>"),
    "dream": Family("dream", True, DREAM_TEMPLATE, "<|mask|>", "<|endoftext|>", "<|im_end|>"),
    "bidirectional": Family("bidirectional", False, BIDIRECTIONAL_TEMPLATE, "<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>"),
}


@dataclass
class DiffusionLM:
    """A mask predictor with its tokenizer and special ids.

    `module` has the sampler's interface: forward(input_ids, attention_mask=None) -> output with
    `.logits` (B x T x V), one position late when `logits_shifted` (Dream).
    """

    module: nn.Module
    tokenizer: object
    family: str
    mask_id: int
    eos_id: int
    eot_id: int
    pad_id: int
    logits_shifted: bool

    @property
    def device(self) -> torch.device:
        """Where the module's weights are, and so where its inputs go."""
        return next(self.module.parameters()).device

    def logits(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Aligned logits: position i predicts token i, whatever the family. B x T x V.

        Give token ids (B x T), or input embeddings (B x T x d) instead, for gradients with respect
        to the input (GCG); LLaDA's remote code and mosa's wrappers accept `inputs_embeds`."""
        inputs = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        raw = self.module(**inputs, attention_mask=attention_mask).logits
        return aligned_logits(raw, self.logits_shifted)

    def chat_text(self, messages: list[dict] | str) -> str:
        """A conversation (a user's text, or any message list: fabricated assistant turns and system
        messages anywhere) rendered by the chat template, followed by the assistant header. What the
        template cannot render is refused in one line, never dropped (render_conversation)."""
        return chat_text(self.tokenizer, messages)

    def render_chat(self, messages: list[dict] | str) -> list[int]:
        """Token ids of a conversation followed by the assistant header, ready for a response."""
        return chat_ids(self.tokenizer, messages)

    @property
    def max_positions(self) -> int | None:
        """Positions, prompt and response together, the model was made for (its config's), or None
        for a module whose config does not say."""
        config = getattr(self.module, "config", None)
        return config_positions(config.to_dict() if hasattr(config, "to_dict") else {})

    def excess_positions(self, prompt_tokens: int, gen_length: int) -> int:
        """How many positions a rendered prompt and its response take beyond the model's (<= 0: it fits)."""
        return 0 if self.max_positions is None else prompt_tokens + gen_length - self.max_positions

    def check_prompts(self, prompts: list, gen_length: int = 0, too_long_hint: str = "") -> list[list[int]]:
        """Each prompt rendered (render_chat). Refuses an empty prompt, and one that with `gen_length`
        response positions does not fit the model's positions: beyond them a model answers garbage
        ("am am am ...") after all the sampling, instead of failing. `too_long_hint` ends the refusal
        of a prompt too long (the caller's own way out, e.g. a flag that truncates)."""
        refuse_empty_prompts(prompts)
        rendered = [self.render_chat(prompt) for prompt in prompts]
        refuse_too_long(rendered, gen_length, self.max_positions, too_long_hint)
        return rendered

    def truncate_prompt(self, prompt: str, gen_length: int) -> str:
        """The prompt's last tokens that fit, with the chat template and `gen_length` response
        positions, in the model's positions; the prompt itself when it fits. The text is cut where a
        token starts (the tokenizer's offsets), so what is kept is the user's own text, unknown words
        included, not a decoding of it."""
        offsets = self.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        starts = [start for start, _ in offsets]
        kept, text = len(starts), prompt
        # A cut text may tokenise a little differently at its start: cut again until the rendered prompt fits.
        while (excess := self.excess_positions(len(self.render_chat(text)), gen_length)) > 0:
            kept -= excess
            if kept < 1:
                raise MosaError(
                    f"the chat template alone leaves no room for a prompt in the model's {self.max_positions} "
                    f"positions with gen_length={gen_length}; lower gen_length"
                )
            text = prompt[starts[-kept] :]
        return text

    def encode_chat(self, prompts: list, gen_length: int = 0, too_long_hint: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """Render and left-pad a batch of prompts, each checked (check_prompts) to fit with a response
        of `gen_length` tokens. Returns input_ids and attention_mask, B x P."""
        rendered = self.check_prompts(prompts, gen_length, too_long_hint)
        width = max(len(ids) for ids in rendered)
        input_ids = torch.full((len(rendered), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rendered), width), dtype=torch.long)
        for row, ids in enumerate(rendered):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def decode_response(self, response_ids: torch.Tensor) -> str:
        """Text of one response with every special token (EOS padding, EoT, masks) dropped and all
        other text kept, as LLaDA's reference scripts decode (skip_special_tokens=True): words an
        attack planted after an early EOS stay visible to the judges."""
        return self.tokenizer.decode(response_ids.tolist(), skip_special_tokens=True).strip()

    def sample_response_ids(
        self, prompts: list, config: SamplerConfig, prefill=None, batch_size: int = 64, bar=None
    ) -> torch.Tensor:
        """Responses to chat prompts, `batch_size` at a time (one prefill for every row). N x gen_length, on the CPU.
        `bar`, a progress bar (mosa.progress), advances by each batch's size."""
        responses = []
        for start in range(0, len(prompts), batch_size):
            input_ids, attention_mask = self.encode_chat(prompts[start : start + batch_size], config.gen_length)
            responses.append(generate(self.module, input_ids, attention_mask, config=config, prefill=prefill).response.cpu())
            if bar is not None:
                bar.update(len(input_ids))
        return torch.cat(responses)

    def sampler_config(self, **settings) -> SamplerConfig:
        """A SamplerConfig with this model's special ids and logit alignment filled in."""
        ids = dict(mask_id=self.mask_id, eos_id=self.eos_id, eot_id=self.eot_id, shift_logits=self.logits_shifted)
        return SamplerConfig(**{**ids, **settings})


def config_positions(config: dict) -> int | None:
    """The positions a config.json gives the model (transformers' name, or LLaDA's own code's)."""
    for name in ("max_position_embeddings", "max_sequence_length"):
        if isinstance(config.get(name), int):
            return config[name]
    return None


def refuse_too_long(rendered: list[list[int]], gen_length: int, positions: int | None, hint: str = "") -> None:
    """Refuse the first rendered prompt that with `gen_length` response positions exceeds `positions`."""
    for number, ids in enumerate(rendered, start=1):
        excess = 0 if positions is None else len(ids) + gen_length - positions
        if excess > 0:
            raise MosaError(
                f"prompt {number} has {len(ids)} tokens with the chat template; with gen_length={gen_length} it needs "
                f"{len(ids) + gen_length} positions and the model has {positions}: shorten it by {excess} tokens "
                f"or lower gen_length{hint}"
            )


def check_prompts_before_loading(
    path: str | Path,
    prompts: list,
    gen_length: int,
    *,
    trust_remote_code: bool = False,
    family: str | None = None,
    too_long_hint: str = "",
) -> None:
    """DiffusionLM.check_prompts from the checkpoint's tokenizer and config.json alone (seconds), so
    that an empty prompt or one too long for the model is refused before a load that can take minutes
    (LLaDA-8B); the loaded model checks each prompt again as it samples it (encode_chat)."""
    refuse_empty_prompts(prompts)
    raw = read_config(str(path))
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    spec = FAMILIES.get(family or detect_family(path, raw))  # an unknown family: load_model refuses it
    if spec is not None:
        give_chat_template(tokenizer, spec)
    refuse_too_long([chat_ids(tokenizer, prompt) for prompt in prompts], gen_length, config_positions(raw), too_long_hint)


def chat_text(tokenizer, messages: list[dict] | str) -> str:
    """DiffusionLM.chat_text with any tokenizer that has a chat template."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return render_conversation(tokenizer, messages)


def chat_ids(tokenizer, messages: list[dict] | str) -> list[int]:
    """DiffusionLM.render_chat with any tokenizer that has a chat template."""
    return tokenizer(chat_text(tokenizer, messages), add_special_tokens=False)["input_ids"]


def give_chat_template(tokenizer, spec: Family) -> None:
    """The family's chat template for a tokenizer that ships none (the loaded model renders with it)."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = spec.chat_template


def refuse_empty_prompts(prompts: list) -> None:
    """Refuse a prompt (text, or a conversation's messages) with no text at all: checked before a
    model loads where prompts come from the user."""
    for number, prompt in enumerate(prompts, start=1):
        text = prompt if isinstance(prompt, str) else " ".join(str(message.get("content") or "") for message in prompt)
        if not text.strip():
            raise MosaError(f"prompt {number} is empty; give it some text")


def detect_family(path: str | Path, raw: dict | None = None) -> str:
    """The family of a checkpoint (local directory or hub id), from its config.json's model_type."""
    raw = raw if raw is not None else read_config(str(path))
    family = family_of(raw)
    if family is None:
        raise MosaError(
            f"model_type {raw.get('model_type')!r} of {path} is not a supported family; "
            "supported: llada, mmada, dream, llama (or pass family= explicitly)"
        )
    return family


def load_model(
    path: str | Path,
    *,
    trust_remote_code: bool = False,
    family: str | None = None,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
) -> DiffusionLM:
    """Load a checkpoint (local directory or hub id) as a DiffusionLM.

    LLaDA, LLaDA-1.5, MMaDA and Dream load natively into transformers' modules (no remote code);
    `trust_remote_code=True` runs the checkpoint's own code instead, for variants the native path
    does not cover. dtype "auto" keeps the checkpoint's dtype; weights load straight onto `device`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    route_transformers_bars()
    path = str(path)
    raw = read_config(path)
    family = family or detect_family(path, raw)
    if family not in FAMILIES:
        raise MosaError(f"family={family!r} is unknown; choose one of {sorted(FAMILIES)}")
    native = family != "bidirectional" and not trust_remote_code
    config = native_config(family, raw, path) if native else None  # refuses a shape it cannot load, before loading
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    device = str(device)

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if family == "bidirectional":
        causal_lm = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, device_map={"": device}, attn_implementation=attn_implementation or "sdpa"
        )
        module: nn.Module = BidirectionalLM(causal_lm)
    elif native:
        module = load_native(path, family, config, dtype=dtype, device=device, attn_implementation=attn_implementation)
    else:
        module = load_remote_code(path, family, dtype=dtype, device=device, attn_implementation=attn_implementation)
    lm = wrap_model(module.eval(), tokenizer, family)
    check_loaded(lm, path)
    return lm


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False):
    """A checkpoint's tokenizer without its weights (seconds), for checks made before a long load."""
    from transformers import AutoTokenizer

    read_config(str(path))  # a missing directory or a malformed hub id fails here, in one line
    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def load_remote_code(path: str, family: str, *, dtype, device: str, attn_implementation: str | None) -> nn.Module:
    """The checkpoint's own model class, made to run on current transformers (mosa.models.compat)."""
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from mosa.models.compat import default_rope_registered, make_compatible, reset_rotary_buffers

    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    auto_map = getattr(config, "auto_map", None) or {}
    reference = auto_map.get("AutoModel") or auto_map.get("AutoModelForCausalLM")
    if reference is None:
        raise MosaError(f"{path} ships no model code (no auto_map in config.json); load it without --trust-remote-code")
    model_class = get_class_from_dynamic_module(reference, path)
    make_compatible(model_class)
    config.use_cache = False  # transformers 5 drops generation keys from configs; LLaDA's forward reads it
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with default_rope_registered():
        module = model_class.from_pretrained(path, config=config, dtype=dtype, device_map={"": device}, **kwargs)
        reset_rotary_buffers(module)
    return DreamLM(module) if family == "dream" else module


def check_loaded(lm: DiffusionLM, path: str) -> None:
    """Refuse a model whose logits are not finite or whose rotary tables differ from its config's."""
    from mosa.models.compat import rotary_mismatch

    mismatch = rotary_mismatch(lm.module)
    if mismatch:
        raise MosaError(
            f"{path}: {mismatch}; the checkpoint's code did not initialise its rotary tables (try the native path, without --trust-remote-code)"
        )
    probe = torch.full((1, 8), lm.mask_id, dtype=torch.long, device=lm.device)
    with torch.no_grad():
        finite = bool(torch.isfinite(lm.logits(probe)).all())
    if not finite:
        raise MosaError(
            f"{path}: the model's logits are not finite (NaN or inf) on a probe input; check the checkpoint and the dtype (float16 can overflow; try bfloat16)"
        )


def check_adapter(adapter: str | Path, what: str = "adapter") -> None:
    """Refuse a directory that holds no peft adapter: checked before the model loads wherever a user
    names one (`what`: the flag or setting it came from), and again by merge_adapter."""
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise MosaError(
            f"{what} {adapter} is not a peft adapter directory (no adapter_config.json there); "
            "give the adapter/ directory of a LoRA run (mosa align's runs/NAME/adapter)"
        )


def merge_adapter(lm: DiffusionLM, adapter: str | Path) -> DiffusionLM:
    """Fold a peft (LoRA) adapter directory into lm's weights, in place. Merged rather than attached,
    so that the sampler keeps its fast path through the model's own forward."""
    from peft import PeftModel

    check_adapter(adapter)  # peft would look for a directory it cannot find on the hub, and fail in a traceback
    lm.module = PeftModel.from_pretrained(lm.module, str(adapter)).merge_and_unload().eval()
    return lm


def wrap_model(module: nn.Module, tokenizer, family: str) -> DiffusionLM:
    """Attach a tokenizer and the family's conventions to a module; checks the special ids."""
    spec = FAMILIES[family]
    give_chat_template(tokenizer, spec)
    config = module.config
    mask_id = getattr(config, "mask_token_id", None)
    if mask_id is None:
        mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else _token_id(tokenizer, spec.mask_token)
    eos_id = _token_id(tokenizer, spec.eos_token)
    if eos_id is None:
        eos_id = tokenizer.eos_token_id
    eot_id = _token_id(tokenizer, spec.eot_token, default=eos_id)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    if mask_id is None:
        raise MosaError(f"the tokenizer defines no mask token ({spec.mask_token!r}); a mask predictor needs one")
    if eos_id is None:
        raise MosaError("the tokenizer defines no EOS token; set eos_token in its tokenizer_config.json")
    if pad_id == mask_id:
        raise MosaError(f"pad id equals mask id ({mask_id}); padding would be decoded as masks; set a different pad_token")
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and not 0 <= mask_id < vocab_size:
        raise MosaError(f"mask id {mask_id} is outside the model's vocabulary [0, {vocab_size})")
    return DiffusionLM(
        module=module,
        tokenizer=tokenizer,
        family=family,
        mask_id=int(mask_id),
        eos_id=int(eos_id),
        eot_id=int(eot_id),
        pad_id=int(pad_id),
        logits_shifted=spec.logits_shifted,
    )


def _token_id(tokenizer, token: str, default: int | None = None) -> int | None:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return default
    return token_id
