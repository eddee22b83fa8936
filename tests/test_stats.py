"""Kendall's tau-b and the Wilson interval against values worked out by hand."""

import math

import pytest

from mosa.stats import kendall_tau, mean_and_spread, newcombe_interval, wilson_interval


@pytest.mark.parametrize(
    "x, y, expected",
    [
        ([0, 1, 2, 3], [0, 1, 2, 3], 1.0),  # same order
        ([0, 1, 2, 3], [3, 2, 1, 0], -1.0),  # reversed
        # pairs (0,1) and (0,2) concordant, (1,2) discordant: (2 - 1) / 3
        ([1, 2, 3], [1, 3, 2], 1 / 3),
        # one tie in x (pair 0,1), pairs (0,2) and (1,2) concordant: 2 / sqrt(2 untied in x * 3 untied in y)
        ([1, 1, 2], [1, 2, 3], 2 / math.sqrt(6)),
        # ties on both sides: x ties (0,1), y ties (2,3); pairs (0,2) (0,3) (1,2) (1,3) concordant,
        # none discordant: 4 / sqrt(5 * 5)
        ([0, 0, 1, 2], [0, 1, 2, 2], 4 / 5),
        # a pair tied in both counts in neither: (0,1) tied in both, the other 5 pairs concordant
        ([0, 0, 1, 2], [5, 5, 6, 7], 1.0),
        # four steps committing two positions each, out of order: x = step, y = position
        ([0, 0, 1, 1, 2, 2], [4, 5, 0, 1, 2, 3], (4 - 8) / math.sqrt(12 * 15)),
    ],
)
def test_kendall_tau_hand_computed(x, y, expected):
    assert kendall_tau(x, y) == pytest.approx(expected)


@pytest.mark.parametrize("x, y", [([], []), ([3], [1]), ([1, 1, 1], [1, 2, 3])])
def test_kendall_tau_undefined(x, y):
    assert kendall_tau(x, y) is None


def test_kendall_tau_needs_pairs():
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])


@pytest.mark.parametrize(
    "successes, n, expected",
    [
        (0, 10, (0.0, 0.27754)),  # an observed 0% still leaves room up to 28%
        (5, 10, (0.23659, 0.76341)),
        (10, 10, (0.72246, 1.0)),
        (1, 4, (0.04559, 0.69936)),
    ],
)
def test_wilson_interval_known_values(successes, n, expected):
    assert wilson_interval(successes, n) == pytest.approx(expected, abs=1e-5)


def test_wilson_interval_refuses_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_mean_and_spread_skips_missing_values():
    assert mean_and_spread([1.0, None, 3.0]) == {"mean": 2.0, "sd": pytest.approx(math.sqrt(2)), "n": 2}
    assert mean_and_spread([None]) == {"mean": None, "sd": None, "n": 0}


def test_the_wilson_interval_touches_0_and_1_exactly_at_the_ends():
    for n in (1, 6, 10, 200):
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


@pytest.mark.parametrize(
    "counts, expected",
    [  # Newcombe (1998), Statistics in Medicine 17: 873-890, Table II, method 10, examples (a), (b), (e)
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ],
)
def test_newcombe_interval_matches_published_values(counts, expected):
    assert newcombe_interval(*counts) == pytest.approx(expected, abs=1e-4)
