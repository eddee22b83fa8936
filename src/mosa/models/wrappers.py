"""Modules that give every family the sampler's interface: forward(input_ids, attention_mask) -> .logits.

A transformers causal LM becomes a mask predictor by running it with full (bidirectional)
attention: mosa's small models, and LLaDA / MMaDA / Dream loaded natively (mosa.models.native).
With remote code, LLaDA's and MMaDA's own modules have the interface already; Dream's wants its
own 4-D mask and position ids.
"""

from __future__ import annotations

import torch
from torch import nn


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Left padding must not shift positions: the first real token of every row is position 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class BidirectionalLM(nn.Module):
    """A transformers causal LM (Llama, Qwen2) run with full attention, as a mask predictor.

    transformers' own switch makes it bidirectional (`config.is_causal = False` and every attention
    module's `is_causal`), so the 2-D padding mask becomes a key-padding mask in whatever attention
    implementation is loaded (eager, sdpa, flash). `positions`: "from_mask" numbers each row from its
    first real token (mosa's small models, Dream); "absolute" numbers every canvas position from 0,
    padding included, as LLaDA's own code does.
    """

    def __init__(self, causal_lm: nn.Module, positions: str = "from_mask"):
        super().__init__()
        if positions not in ("from_mask", "absolute"):
            raise ValueError(f"positions={positions!r}: use 'from_mask' or 'absolute'")
        causal_lm.config.is_causal = False
        for module in causal_lm.modules():
            if hasattr(module, "is_causal"):
                module.is_causal = False
        self.lm = causal_lm
        self.config = causal_lm.config
        self.positions = positions

    def forward(
        self, input_ids=None, attention_mask=None, logits_to_keep=None, inputs_embeds=None, position_ids=None, cache=None
    ):
        """Token ids (B x T), or input embeddings (B x T x d) in their place; attention_mask B x T.

        With `cache` (a transformers DynamicCache holding other canvas positions' keys and values,
        mosa.sampling.fast) the tokens attend to the cached positions and to each other, the mask covers
        cached and new positions in the cache's order, and `position_ids` (canvas_positions of the
        new tokens) must be given: the cache's length says nothing about where the tokens sit."""
        if position_ids is None and attention_mask is not None and self.positions == "from_mask":
            position_ids = positions_from_mask(attention_mask)
        return self.lm(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=0 if logits_to_keep is None else logits_to_keep,
            use_cache=cache is not None,
            cache=cache,
        )

    def canvas_positions(self, attention_mask: torch.Tensor | None, batch: int, length: int) -> torch.Tensor:
        """The position ids of a whole canvas (B x T) as `forward` numbers them without a cache."""
        if attention_mask is not None and self.positions == "from_mask":
            return positions_from_mask(attention_mask)
        device = None if attention_mask is None else attention_mask.device
        return torch.arange(length, device=device).expand(batch, length)

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
