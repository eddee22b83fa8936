"""Remasking rules: how confident the sampler is in each candidate token.

At every denoising step the sampler commits the k most confident candidates and leaves the rest
masked. A rule maps the logits at the candidate positions and the proposed tokens to one score per
position (higher = commit sooner). A rule that needs randomness draws it from `noise.uniform()`, the
step's noise per prompt (mosa.sampling.noise), never from torch's global generator, so that a row's
sample depends on its own prompt and the seed only. Rules are plug-ins found by name; add one with
`@register_remasking("name")`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mosa.errors import MosaError
from mosa.sampling.noise import StepNoise

# (logits: B x K x V, x0: B x K, noise) -> confidence: B x K
RemaskingRule = Callable[[torch.Tensor, torch.Tensor, StepNoise], torch.Tensor]

REMASKING_RULES: dict[str, RemaskingRule] = {}


def register_remasking(name: str):
    def decorator(rule: RemaskingRule) -> RemaskingRule:
        REMASKING_RULES[name] = rule
        return rule

    return decorator


def get_remasking_rule(name: str) -> RemaskingRule:
    if name not in REMASKING_RULES:
        raise MosaError(f"remasking={name!r} is not a known rule; choose one of {sorted(REMASKING_RULES)}")
    return REMASKING_RULES[name]


@register_remasking("low_confidence")
def low_confidence(logits, x0, noise):
    # Softmax in the logits' own dtype, as the reference does: bf16 logits give bf16 confidences.
    probs = F.softmax(logits, dim=-1)
    return torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)


@register_remasking("random")
def random_confidence(logits, x0, noise):
    return noise.uniform()


@register_remasking("margin")
def margin(logits, x0, noise):
    """p(x0) minus the best other token's probability (top-1 minus top-2 at temperature 0)."""
    probs = F.softmax(logits.float(), dim=-1)
    chosen = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
    best_other = probs.scatter(-1, x0.unsqueeze(-1), float("-inf")).amax(dim=-1)
    return chosen - best_other


@register_remasking("entropy")
def negative_entropy(logits, x0, noise):
    """Sum of p log p: peaked distributions (low entropy) are committed first."""
    probs = F.softmax(logits.float(), dim=-1)
    return -torch.special.entr(probs).sum(dim=-1)  # entr(0) = 0, so -inf logits are harmless
