"""The MOSA objective against brute force, its gradient, and its KL."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mosa.align.objective import kl_divergence, mosa_objective, window_offsets, window_score
from mosa.errors import MosaError


def brute_force_score(logprobs, sentence, window, fit):
    start, end = window
    length, best = len(sentence), None
    for row in range(logprobs.shape[0]):
        scores = []
        for k in range(start, end):
            if fit == "inside" and k + length > end:
                continue
            if k + length > logprobs.shape[1]:
                continue
            scores.append(sum(logprobs[row, k + j, token].item() for j, token in enumerate(sentence)))
        best = [max(scores)] if best is None else best + [max(scores)]
    return torch.tensor(best)


@pytest.mark.parametrize(
    "window, fit, length", list(itertools.product([(0, 6), (3, 9), (5, 12)], ["inside", "start"], [1, 3, 5]))
)
def test_window_score_equals_brute_force(window, fit, length):
    generator = torch.Generator().manual_seed(hash((window, fit, length)) % 1000)
    logprobs = F.log_softmax(torch.randn(3, 12, 7, generator=generator, dtype=torch.float64), dim=-1)
    sentence = torch.randint(0, 7, (length,), generator=generator)
    expected = brute_force_score(logprobs, sentence.tolist(), window, fit)
    assert torch.allclose(window_score(logprobs, sentence, window, fit), expected.to(torch.float64))


def test_fit_rules_differ_at_the_window_edge():
    assert window_offsets((2, 6), 3, 10, "inside").tolist() == [2, 3]
    assert window_offsets((2, 6), 3, 10, "start").tolist() == [2, 3, 4, 5]
    assert window_offsets((2, 10), 3, 10, "start").tolist() == list(range(2, 8))  # never past the response


@pytest.mark.parametrize(
    "window, length, message",
    [
        ((0, 40), 3, "does not fit in a response of length 32"),
        ((4, 6), 3, "does not fit in window"),
        ((6, 4), 1, "does not fit in a response"),
    ],
)
def test_bad_windows_are_refused(window, length, message):
    with pytest.raises(MosaError, match=message):
        window_offsets(window, length, 32, "inside")


def test_gradient_flows_only_through_the_best_offset():
    logits = torch.zeros(1, 8, 5, requires_grad=True)
    with torch.no_grad():
        logits[0, 4, 2] = 5.0  # token 2 is likely at position 4: the best offset for [2, 3] is 4
        logits[0, 5, 3] = 5.0
    score = window_score(F.log_softmax(logits, dim=-1), torch.tensor([2, 3]), (0, 8))
    score.sum().backward()
    touched = logits.grad.abs().sum(dim=-1)[0]
    assert touched.nonzero().flatten().tolist() == [4, 5]


def test_kl_is_zero_against_itself_and_positive_otherwise():
    logits = torch.randn(2, 6, 9)
    logprobs = F.log_softmax(logits, dim=-1)
    assert torch.allclose(kl_divergence(logprobs, logprobs), torch.zeros(2), atol=1e-6)
    other = F.log_softmax(logits + torch.randn(2, 6, 9), dim=-1)
    summed, averaged = kl_divergence(logprobs, other, "sum"), kl_divergence(logprobs, other, "mean")
    assert (summed > 0).all() and torch.allclose(summed, 6 * averaged)


def test_objective_terms_and_harmful_floor():
    policy, reference = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    safe, harmful = torch.tensor([1, 2]), torch.tensor([3])
    terms = mosa_objective(policy, reference, safe, harmful, window=(2, 8), beta=0.05)
    assert torch.allclose(terms.reward, terms.safe - terms.harmful)
    assert torch.allclose(terms.objective, terms.reward - 0.05 * terms.kl)
    floored = mosa_objective(policy, reference, safe, harmful, window=(2, 8), beta=0.05, harmful_floor=0.0)
    assert torch.allclose(floored.harmful, torch.zeros(2))  # log-probabilities are <= 0
