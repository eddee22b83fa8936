"""Small statistics the analyses report: Wilson intervals for rates, Kendall's tau for orders,
and the mean with its spread."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% with z, the normal quantile at 0.975), as (low, high) in [0, 1].

    Unlike the normal approximation p +- z sqrt(p(1-p)/n), it stays inside [0, 1] and does not
    collapse to a point at 0% or 100%, which small samples (and attack success rates) often hit."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n and n > 0; got successes={successes}, n={n}")
    rate = successes / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    # At 0 and n successes the bound is exactly 0 or 1; computed, it is off by rounding (2.8e-17).
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)
    high = 1.0 if successes == n else min(1.0, centre + half_width)
    return low, high


def newcombe_interval(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for the difference of two proportions,
    rate_a - rate_b, at 95%: each rate's Wilson interval, combined. For the same prompts answered two
    ways (paired samples) it ignores the pairing, which errs wide when the two answers agree often."""
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    low_a, high_a = wilson_interval(successes_a, n_a)
    low_b, high_b = wilson_interval(successes_b, n_b)
    difference = rate_a - rate_b
    low = difference - math.sqrt((rate_a - low_a) ** 2 + (high_b - rate_b) ** 2)
    high = difference + math.sqrt((high_a - rate_a) ** 2 + (rate_b - low_b) ** 2)
    return max(-1.0, low), min(1.0, high)


def kendall_tau(x: Sequence[float] | torch.Tensor, y: Sequence[float] | torch.Tensor) -> float | None:
    """Kendall's tau-b between two paired sequences; None when it is undefined (fewer than two
    pairs, or one sequence constant).

    tau-b = (concordant - discordant) / sqrt(pairs not tied in x * pairs not tied in y), the
    variant that corrects for ties (several positions committed at one denoising step tie in the
    step). All n(n-1)/2 pairs are compared at once: O(n^2) memory and time, fine for n <= a few
    thousand."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()  # n
    y = torch.as_tensor(y, dtype=torch.float64).flatten()  # n
    if x.shape != y.shape:
        raise ValueError(f"kendall_tau needs paired sequences; got lengths {len(x)} and {len(y)}")
    x_order = torch.sign(x.unsqueeze(1) - x.unsqueeze(0))  # n x n: sign(x_i - x_j)
    y_order = torch.sign(y.unsqueeze(1) - y.unsqueeze(0))
    # Each pair appears twice (i, j and j, i) with the same product, so the ratio is unchanged.
    concordant_minus_discordant = float((x_order * y_order).sum())
    untied_in_x = float((x_order != 0).sum())
    untied_in_y = float((y_order != 0).sum())
    if untied_in_x == 0 or untied_in_y == 0:
        return None
    return concordant_minus_discordant / math.sqrt(untied_in_x * untied_in_y)


def mean_and_spread(values: Sequence[float | None]) -> dict:
    """{"mean", "sd", "n"} of the values that are not None (sd: sample standard deviation, None
    below two values; mean None when there are none)."""
    present = [float(value) for value in values if value is not None]
    n = len(present)
    if n == 0:
        return {"mean": None, "sd": None, "n": 0}
    mean = sum(present) / n
    sd = math.sqrt(sum((value - mean) ** 2 for value in present) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "n": n}
