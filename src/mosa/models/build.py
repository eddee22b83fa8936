"""Build small bidirectional models and word-level tokenizers locally (no hub access needed).

They follow LLaDA's conventions: BOS <|startoftext|>, EOS <|endoftext|> (also the padding, as in
LLaDA's SFT), EoT <|eot_id|>, mask <|mdm_mask|>, so everything written for LLaDA runs on them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mosa.models.chat_templates import BIDIRECTIONAL_TEMPLATE
from mosa.models.diffusion_lm import DiffusionLM, wrap_model
from mosa.models.wrappers import BidirectionalLM
from mosa.progress import route_transformers_bars

SPECIAL_TOKENS = {
    "unk_token": "<|unk|>",
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    "mask_token": "<|mdm_mask|>",
}
ROLE_TOKENS = ["<|eot_id|>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_word_tokenizer(
    words: list[str],
    *,
    special_tokens: dict[str, str] = SPECIAL_TOKENS,
    extra_tokens: list[str] = ROLE_TOKENS,
    chat_template: str | None = BIDIRECTIONAL_TEMPLATE,
    lowercase: bool = False,
    split_punctuation: bool = False,
):
    """A word-level tokenizer: special tokens first, then `extra_tokens`, then `words`, in order.

    Text is split on whitespace (and, with `split_punctuation`, between words and punctuation);
    special and extra tokens are matched anywhere in the text; unknown words become unk_token.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys(special_tokens.values())) + list(extra_tokens)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(specials + list(words)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=special_tokens.get("unk_token")))
    if lowercase:
        core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace() if split_punctuation else pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **special_tokens)
    tokenizer.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
    tokenizer.chat_template = chat_template
    tokenizer.padding_side = "left"
    return tokenizer


def build_bidirectional_llama(
    tokenizer,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_positions: int = 1024,
    seed: int = 0,
    attn_implementation: str = "sdpa",
) -> DiffusionLM:
    """A randomly initialised Llama run with full attention, wrapped as a DiffusionLM."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        tie_word_embeddings=False,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(seed)
    module = BidirectionalLM(LlamaForCausalLM(config)).eval()
    return wrap_model(module, tokenizer, "bidirectional")


def save_model(lm: DiffusionLM, path: str | Path) -> Path:
    """Save as a standard Hugging Face checkpoint with its tokenizer; `load_model(path)` reads it back."""
    route_transformers_bars()
    path = Path(path)
    inner = lm.module.lm if isinstance(lm.module, BidirectionalLM) else lm.module
    inner.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path
