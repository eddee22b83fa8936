"""One interface for masked-diffusion LMs, and loading checkpoints of each family.

    lm = load_model("GSAI-ML/LLaDA-8B-Instruct", trust_remote_code=True, dtype="bfloat16")
    ids, mask = lm.encode_chat(["How do magnets work?"])
    out = generate(lm.module, ids, mask, config=lm.sampler_config(gen_length=128))

Families:
  llada / mmada   the checkpoint's own code (remote code), used as it is
  dream           remote code, wrapped for its 4-D mask; logits shifted by one position
  bidirectional   any Hugging Face Llama checkpoint run with full attention (tests, the organism)
Special ids come from the tokenizer and config, never from constants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mosa.errors import MosaError
from mosa.models.chat_templates import BIDIRECTIONAL_TEMPLATE, DREAM_TEMPLATE, LLADA_TEMPLATE
from mosa.models.wrappers import BidirectionalLM, DreamLM
from mosa.sampling import SamplerConfig, aligned_logits, generate


@dataclass(frozen=True)
class Family:
    name: str
    needs_remote_code: bool
    logits_shifted: bool
    chat_template: str
    # Looked up by name in the tokenizer (the config's mask_token_id wins for the mask).
    mask_token: str
    eos_token: str
    eot_token: str


FAMILIES = {
    "llada": Family("llada", True, False, LLADA_TEMPLATE, "<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>"),
    "mmada": Family("mmada", True, False, LLADA_TEMPLATE, "<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>"),
    "dream": Family("dream", True, True, DREAM_TEMPLATE, "<|mask|>", "<|endoftext|>", "<|im_end|>"),
    "bidirectional": Family(
        "bidirectional", False, False, BIDIRECTIONAL_TEMPLATE, "<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>"
    ),
}
# config.json model_type -> family
MODEL_TYPES = {"llada": "llada", "mmada": "mmada", "dream": "dream", "llama": "bidirectional"}


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

    def logits(
        self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Aligned logits: position i predicts token i, whatever the family. B x T x V.

        Give token ids (B x T), or input embeddings (B x T x d) instead, for gradients with respect
        to the input (GCG); LLaDA's remote code and mosa's wrappers accept `inputs_embeds`."""
        inputs = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        raw = self.module(**inputs, attention_mask=attention_mask).logits
        return aligned_logits(raw, self.logits_shifted)

    def chat_text(self, messages: list[dict] | str) -> str:
        """A conversation rendered by the chat template, followed by the assistant header."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def render_chat(self, messages: list[dict] | str) -> list[int]:
        """Token ids of a conversation followed by the assistant header, ready for a response."""
        return self.tokenizer(self.chat_text(messages), add_special_tokens=False)["input_ids"]

    def encode_chat(self, prompts: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Render and left-pad a batch of prompts. Returns input_ids and attention_mask, B x P."""
        rendered = [self.render_chat(prompt) for prompt in prompts]
        width = max(len(ids) for ids in rendered)
        input_ids = torch.full((len(rendered), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rendered), width), dtype=torch.long)
        for row, ids in enumerate(rendered):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        device = next(self.module.parameters()).device
        return input_ids.to(device), attention_mask.to(device)

    def decode_response(self, response_ids: torch.Tensor) -> str:
        """Text of one response with every special token (EOS padding, EoT, masks) dropped and all
        other text kept, as LLaDA's reference scripts decode (skip_special_tokens=True): words an
        attack planted after an early EOS stay visible to the judges."""
        return self.tokenizer.decode(response_ids.tolist(), skip_special_tokens=True).strip()

    def sample_response_ids(self, prompts: list, config: SamplerConfig, prefill=None, batch_size: int = 64) -> torch.Tensor:
        """Responses to chat prompts, `batch_size` at a time (one prefill for every row). N x gen_length, on the CPU."""
        responses = []
        for start in range(0, len(prompts), batch_size):
            input_ids, attention_mask = self.encode_chat(prompts[start : start + batch_size])
            responses.append(generate(self.module, input_ids, attention_mask, config=config, prefill=prefill).response.cpu())
        return torch.cat(responses)

    def sampler_config(self, **settings) -> SamplerConfig:
        """A SamplerConfig with this model's special ids and logit alignment filled in."""
        ids = dict(mask_id=self.mask_id, eos_id=self.eos_id, eot_id=self.eot_id, shift_logits=self.logits_shifted)
        return SamplerConfig(**{**ids, **settings})


def detect_family(path: str | Path) -> str:
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise MosaError(f"no config.json in {path}; give a Hugging Face checkpoint directory")
    model_type = json.loads(config_file.read_text()).get("model_type", "")
    family = MODEL_TYPES.get(model_type.lower())
    if family is None:
        raise MosaError(
            f"model_type {model_type!r} in {config_file} is not a supported family; "
            f"supported: {sorted(MODEL_TYPES)} (or pass family= explicitly)"
        )
    return family


def load_model(
    path: str | Path,
    *,
    trust_remote_code: bool = False,
    family: str | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
) -> DiffusionLM:
    """Load a checkpoint (local directory or hub id) as a DiffusionLM.

    Remote code (LLaDA, MMaDA, Dream) runs only when `trust_remote_code` is set; hub ids resolve
    through the Hugging Face cache, local directories as they are.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    path = str(path)
    family = family or (detect_family(path) if Path(path).is_dir() else _family_from_hub(path, trust_remote_code))
    if family not in FAMILIES:
        raise MosaError(f"family={family!r} is unknown; choose one of {sorted(FAMILIES)}")
    spec = FAMILIES[family]
    if spec.needs_remote_code and not trust_remote_code:
        raise MosaError(
            f"{path} is a {family} checkpoint whose model code ships with the checkpoint; "
            "rerun with --trust-remote-code (trust_remote_code=True) if you trust its source"
        )
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if family == "bidirectional":
        kwargs = {"attn_implementation": attn_implementation or "sdpa"}
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs)
        module: nn.Module = BidirectionalLM(lm)
    else:
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        hf_module = AutoModel.from_pretrained(path, trust_remote_code=True, dtype=torch_dtype, **kwargs)
        module = DreamLM(hf_module) if family == "dream" else hf_module
    module = module.to(device).eval()
    return wrap_model(module, tokenizer, family)


def merge_adapter(lm: DiffusionLM, adapter: str | Path) -> DiffusionLM:
    """Fold a peft (LoRA) adapter directory into lm's weights, in place. Merged rather than attached,
    so that the sampler keeps its fast path through the model's own forward."""
    from peft import PeftModel

    lm.module = PeftModel.from_pretrained(lm.module, str(adapter)).merge_and_unload().eval()
    return lm


def wrap_model(module: nn.Module, tokenizer, family: str) -> DiffusionLM:
    """Attach a tokenizer and the family's conventions to a module; checks the special ids."""
    spec = FAMILIES[family]
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = spec.chat_template
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


def _family_from_hub(model_id: str, trust_remote_code: bool) -> str:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    except ValueError as error:  # transformers refuses unknown model types without remote code
        raise MosaError(
            f"{model_id} needs its own model code; rerun with --trust-remote-code if you trust its source ({error})"
        ) from None
    except OSError as error:
        raise MosaError(f"cannot load {model_id}: {str(error).splitlines()[0]}") from None
    family = MODEL_TYPES.get(config.model_type.lower())
    if family is None:
        raise MosaError(f"model_type {config.model_type!r} of {model_id} is not a supported family; supported: {sorted(MODEL_TYPES)}")
    return family
