"""Modules that give every family the sampler's interface: forward(input_ids, attention_mask) -> .logits.

LLaDA and MMaDA checkpoints already have it and are used as they are. A Hugging Face causal LM
becomes a mask predictor by running it with full (bidirectional) attention; Dream wants its own
4-D mask and position ids.
"""

from __future__ import annotations

import torch
from torch import nn


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Left padding must not shift positions: the first real token of every row is position 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class BidirectionalLM(nn.Module):
    """A Hugging Face causal LM (Llama family) run with full attention, as a mask predictor.

    Full attention is passed as an additive 4-D mask (B x 1 x T x T: 0 where a key is visible,
    the dtype's minimum at padding), which transformers' eager and sdpa attention use as given.
    """

    def __init__(self, causal_lm: nn.Module):
        super().__init__()
        self.lm = causal_lm
        self.config = causal_lm.config

    def forward(self, input_ids=None, attention_mask=None, logits_to_keep=None, inputs_embeds=None):
        """Token ids (B x T), or input embeddings (B x T x d) in their place."""
        given = input_ids if inputs_embeds is None else inputs_embeds
        (batch, length), device = given.shape[:2], given.device
        if attention_mask is None:
            attention_mask = torch.ones((batch, length), dtype=torch.long, device=device)
        dtype = self.lm.get_input_embeddings().weight.dtype
        hidden_keys = attention_mask[:, None, None, :] == 0  # B x 1 x 1 T
        additive = torch.zeros((batch, 1, length, length), dtype=dtype, device=device)
        additive = additive.masked_fill(hidden_keys, torch.finfo(dtype).min)
        return self.lm(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=additive,
            position_ids=positions_from_mask(attention_mask),
            logits_to_keep=0 if logits_to_keep is None else logits_to_keep,
            use_cache=False,
        )

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()


class DreamLM(nn.Module):
    """Dream with the 2-D padding mask turned into the 4-D boolean mask and positions it expects.

    Its logits stay as Dream produces them, one position late: consumers align them
    (`mosa.sampling.aligned_logits`, `DiffusionLM.logits`).
    """

    def __init__(self, dream: nn.Module):
        super().__init__()
        self.dream = dream
        self.config = dream.config

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        """Token ids (B x T), or input embeddings (B x T x d) in their place."""
        if attention_mask is None or bool((attention_mask != 0).all()):
            return self.dream(input_ids, "full", None, inputs_embeds=inputs_embeds)
        visible = attention_mask.bool()
        mask_4d = visible[:, None, None, :] & visible[:, None, :, None]  # B x 1 x T x T
        positions = attention_mask.long().cumsum(-1) - 1
        positions = positions.masked_fill(~visible, 1)
        return self.dream(input_ids, mask_4d, positions, inputs_embeds=inputs_embeds)

    def get_input_embeddings(self):
        return self.dream.get_input_embeddings()
