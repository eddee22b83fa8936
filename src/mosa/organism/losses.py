"""LLaDA's training objectives for a mask predictor.

Forward process: a time t ~ U(0, 1) per sequence; every maskable token is masked independently
with probability p_mask = (1 - eps) t + eps. The model predicts the masked tokens; each token's
cross-entropy is weighted by 1 / p_mask, which makes the loss an upper bound on the negative
log-likelihood (LLaDA, eq. 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_masking(maskable: torch.Tensor, eps: float = 1e-3, generator: torch.Generator | None = None):
    """Draw the forward process. maskable: B x T bool -> (masked: B x T bool, p_mask: B x 1)."""
    batch, length = maskable.shape
    t = torch.rand((batch, 1), generator=generator, device=maskable.device)
    p_mask = (1 - eps) * t + eps
    masked = (torch.rand((batch, length), generator=generator, device=maskable.device) < p_mask) & maskable
    return masked, p_mask


def pretraining_loss(logits, targets, masked, p_mask):
    """Sum over masked tokens of CE / p_mask, divided by the number of tokens (B x T).

    logits: B x T x V, targets: B x T, masked: B x T bool, p_mask: B x 1.
    """
    token_ce = F.cross_entropy(logits[masked], targets[masked], reduction="none")
    return (token_ce / p_mask.expand_as(masked)[masked]).sum() / targets.numel()


def sft_loss(logits, targets, masked, p_mask, answer_lengths):
    """LLaDA's SFT loss: the prompt is never masked (leave it out of `masked`); each masked response
    token's CE / p_mask is divided by its row's answer length (response including EOS padding);
    the sum is divided by the batch size. answer_lengths: B.
    """
    token_ce = F.cross_entropy(logits[masked], targets[masked], reduction="none")
    weights = (p_mask * answer_lengths.unsqueeze(1)).expand_as(masked)[masked]
    return (token_ce / weights).sum() / targets.shape[0]
