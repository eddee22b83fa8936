"""The MOSA objective (Xie, Song, Luo, AAAI 2026), exactly as the paper states it.

One forward pass of the policy on [chat prompt ; L masks] gives log-probabilities at every
response position, L_theta[position, vocab]. A sentence S scores, inside a window of response
positions, the best sum over start offsets k of L_theta[k + j, S_j]. With a safe sentence (a
refusal ending in EOS) and a harmful one (an affirmative or procedural opener):

    reward    R = score(safe) - score(harmful)
    objective   R - beta * KL(P_theta || P_ref)     (maximised; P_ref is the frozen base model)

Choices the paper leaves open are explicit arguments here: whether a sentence must fit inside
the window or only start in it (`fit`), and whether the KL is summed over response positions or
averaged (`kl_reduction`). The reward is differentiable, so training is direct gradient ascent:
no rollouts, no reward model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mosa.errors import MosaError

FITS = ("inside", "start")
KL_REDUCTIONS = ("sum", "mean")


def check_window(window: tuple[int, int], response_length: int, fit: str = "inside") -> None:
    """Refuse a window that is not [start, end) inside the response, and an unknown fit."""
    if fit not in FITS:
        raise MosaError(f"fit={fit!r} must be one of {FITS}")
    start, end = window
    if not 0 <= start < end <= response_length:
        raise MosaError(
            f"window {format_window(window)} does not fit in a response of length {response_length}; "
            f"give START:END with 0 <= START < END <= {response_length}"
        )


def format_window(window) -> str:
    """A window as every log, figure and report writes it: half-open, '[8, 24)'."""
    start, end = window
    return f"[{start}, {end})"


def window_offsets(window: tuple[int, int], sentence_length: int, response_length: int, fit: str = "inside") -> torch.Tensor:
    """Start offsets a sentence may take. fit="inside": the whole sentence lies in [start, end);
    fit="start": it starts in the window and may run past its end, but not past the response."""
    check_window(window, response_length, fit)
    start, end = window
    last = end - sentence_length if fit == "inside" else min(end - 1, response_length - sentence_length)
    if last < start:
        raise MosaError(
            f"a sentence of {sentence_length} tokens does not fit in window {format_window(window)} (fit={fit!r}); "
            "shorten the sentence or widen the window"
        )
    return torch.arange(start, last + 1)


def window_score(
    logprobs: torch.Tensor,
    sentence_ids: torch.Tensor,
    window: tuple[int, int],
    fit: str = "inside",
    masked: torch.Tensor | None = None,
) -> torch.Tensor:
    """max over offsets k of sum_j logprobs[:, k + j, sentence_ids[j]].

    logprobs: B x L x V over response positions (aligned: position i predicts token i);
    sentence_ids: 1-D; window: half-open (start, end) of 0-based response positions. Returns B.
    The max passes gradient only to the best offset. `masked` (B x L bool; None: every position)
    keeps, per row, only the offsets whose positions are all still masks: a sentence cannot be
    written over tokens already on the canvas (primed-mosa's contaminated canvases).
    """
    sentence_ids = sentence_ids.to(logprobs.device)
    length = len(sentence_ids)
    offsets = window_offsets(window, length, logprobs.shape[1], fit).to(logprobs.device)  # K
    token_logprobs = logprobs[:, :, sentence_ids]  # B x L x n: every position, every sentence token
    positions = offsets[:, None] + torch.arange(length, device=logprobs.device)[None, :]  # K x n
    per_offset = token_logprobs[:, positions, torch.arange(length, device=logprobs.device)].sum(dim=-1)  # B x K
    if masked is not None:
        free = masked.to(logprobs.device)[:, positions].all(dim=-1)  # B x K
        if not free.any(dim=-1).all():
            raise MosaError("a row has no offset in the window whose positions are all masked; the sentence has no room")
        per_offset = per_offset.masked_fill(~free, float("-inf"))
    return per_offset.amax(dim=-1)


def kl_divergence(
    policy_logprobs: torch.Tensor,
    reference_logprobs: torch.Tensor,
    reduction: str = "sum",
    masked: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(P_policy || P_ref) per row, over response positions (B x L x V each -> B).

    "sum" adds the per-position KLs (a per-token penalty summed over the sequence, as in
    InstructGPT); "mean" averages them, which amounts to dividing beta by L. `masked` (B x L bool;
    None: every position) counts only the positions that are still masks: the model's output at a
    position already holding a token is never sampled.
    """
    if reduction not in KL_REDUCTIONS:
        raise MosaError(f"kl_reduction={reduction!r} must be one of {KL_REDUCTIONS}")
    per_position = (policy_logprobs.exp() * (policy_logprobs - reference_logprobs)).sum(dim=-1)  # B x L
    if masked is None:
        return per_position.sum(dim=-1) if reduction == "sum" else per_position.mean(dim=-1)
    masked = masked.to(per_position.device)
    summed = (per_position * masked).sum(dim=-1)
    return summed if reduction == "sum" else summed / masked.sum(dim=-1).clamp(min=1)


@dataclass
class ObjectiveTerms:
    objective: torch.Tensor  # B: maximised
    reward: torch.Tensor  # B: safe - harmful
    safe: torch.Tensor  # B: R_pos
    harmful: torch.Tensor  # B: R_neg
    kl: torch.Tensor  # B


def mosa_objective(
    policy_logits: torch.Tensor,
    reference_logits: torch.Tensor,
    safe_ids: torch.Tensor,
    harmful_ids: torch.Tensor,
    *,
    window: tuple[int, int],
    beta: float,
    fit: str = "inside",
    kl_reduction: str = "sum",
    harmful_floor: float | None = None,
    masked: torch.Tensor | None = None,
) -> ObjectiveTerms:
    """The per-prompt objective from aligned response logits (B x L x V each).

    `harmful_floor` (not in the paper; default off) clamps the harmful score from below, so the
    reward cannot keep growing by making the harmful phrase ever less likely. `masked` (B x L bool;
    None, MOSA's fully masked canvas: every position) restricts the scores and the KL to the
    positions still masked (`window_score`, `kl_divergence`).
    """
    policy_logprobs = F.log_softmax(policy_logits.float(), dim=-1)
    reference_logprobs = F.log_softmax(reference_logits.float(), dim=-1)
    safe = window_score(policy_logprobs, safe_ids, window, fit, masked)
    harmful = window_score(policy_logprobs, harmful_ids, window, fit, masked)
    if harmful_floor is not None:
        harmful = harmful.clamp(min=harmful_floor)
    reward = safe - harmful
    kl = kl_divergence(policy_logprobs, reference_logprobs, kl_reduction, masked)
    return ObjectiveTerms(objective=reward - beta * kl, reward=reward, safe=safe, harmful=harmful, kl=kl)
