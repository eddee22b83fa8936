"""Per-token log-probabilities of a response three ways, against brute force on a tiny model: hand-written
loops for the masked and teacher-forced readings, and the ELBO's exact value by enumerating every mask."""

import itertools
import math

import pytest
import torch

from mosa.errors import MosaError
from mosa.models.likelihood import elbo_logprobs, masked_logprobs, teacher_forced_logprobs
from tests.conftest import tiny_llama

PROMPT = [1, 6, 12, 13, 14, 4, 7]  # <bos> <|user|> three words <eot> <|assistant|>
RESPONSE = [20, 21, 22, 23]
GEN_LENGTH = 8


@pytest.fixture(scope="module")
def lm(tokenizer):
    return tiny_llama(tokenizer, seed=7)


@torch.no_grad()
def logprob_at(lm, canvas, column, token):
    """log p(token) at one canvas column, from one forward pass on that canvas alone."""
    logits = lm.module(torch.tensor([canvas])).logits[0, column]
    return float(torch.log_softmax(logits.float(), dim=-1)[token])


def canvas(lm, shown, position=0):
    """[PROMPT ; GEN_LENGTH masks] with RESPONSE's tokens at `shown` (indices into it) written at `position`."""
    tokens = PROMPT + [lm.mask_id] * GEN_LENGTH
    for index in shown:
        tokens[len(PROMPT) + position + index] = RESPONSE[index]
    return tokens


@pytest.mark.parametrize("position", [0, 3])
def test_masked_logprobs_equal_a_hand_written_loop(lm, position):
    scores = masked_logprobs(lm, PROMPT, RESPONSE, gen_length=GEN_LENGTH, position=position)
    column = len(PROMPT) + position
    expected = [logprob_at(lm, canvas(lm, []), column + i, token) for i, token in enumerate(RESPONSE)]
    assert scores.token_ids == RESPONSE and scores.forward_passes == 1
    assert scores.logprobs == pytest.approx(expected, abs=1e-5)
    assert scores.total == pytest.approx(sum(expected), abs=1e-5)


@pytest.mark.parametrize("position, batch_size", [(0, 16), (2, 3), (0, 1)])
def test_teacher_forced_logprobs_and_top_k_equal_a_hand_written_loop(lm, position, batch_size):
    scores = teacher_forced_logprobs(
        lm, PROMPT, RESPONSE, gen_length=GEN_LENGTH, position=position, top_k=5, batch_size=batch_size
    )
    assert scores.forward_passes == len(RESPONSE)
    for i, token in enumerate(RESPONSE):
        shown = canvas(lm, range(i), position)  # tokens before i revealed, the rest masked
        column = len(PROMPT) + position + i
        assert scores.logprobs[i] == pytest.approx(logprob_at(lm, shown, column, token), abs=1e-5)
        everything = [logprob_at(lm, shown, column, candidate) for candidate in range(len(lm.tokenizer))]
        best = sorted(range(len(everything)), key=lambda candidate: -everything[candidate])[:5]
        assert scores.top_ids[i] == best
        assert scores.top_logprobs[i] == pytest.approx([everything[candidate] for candidate in best], abs=1e-5)


def exact_elbo(lm, response_length):
    """The ELBO by enumerating every non-empty mask subset M of the response (one forward pass each):
    per token i, the sum over M holding i of log p(y_i | y outside M) / (|M| * C(m, |M|))."""
    m = response_length
    per_token = [0.0] * m
    for size in range(1, m + 1):
        for masked in itertools.combinations(range(m), size):
            shown = canvas(lm, [i for i in range(m) if i not in masked])
            for i in masked:
                logprob = logprob_at(lm, shown, len(PROMPT) + i, RESPONSE[i])
                per_token[i] += logprob / (size * math.comb(m, size))
    return per_token


def mean_over_orders(lm, response_length):
    """The average over all m! decoding orders of the order's left-to-right log-likelihood (each
    token scored with the tokens before it in the order revealed): the ELBO by its other reading."""
    orders = list(itertools.permutations(range(response_length)))
    total = 0.0
    for order in orders:
        for step, i in enumerate(order):
            total += logprob_at(lm, canvas(lm, order[:step]), len(PROMPT) + i, RESPONSE[i])
    return total / len(orders)


def test_the_exact_elbo_is_the_mean_over_decoding_orders(lm):
    assert sum(exact_elbo(lm, len(RESPONSE))) == pytest.approx(mean_over_orders(lm, len(RESPONSE)), abs=1e-4)


def test_the_elbo_estimate_converges_to_the_exact_value(lm):
    """Within 4 standard errors, per token and in total, at mc_num = 20000 (where 4 standard errors
    tell the ELBO from the masked and teacher-forced readings); and closer than at mc_num = 40."""
    m = len(RESPONSE)
    exact = torch.tensor(exact_elbo(lm, m))
    # The estimator's standard error: every count l appears mc_num/m times, each a uniform subset of
    # size l, so its variance is the mean over l of Var(sample | l), divided by mc_num.
    samples = {size: [] for size in range(1, m + 1)}  # l -> the sample values (m per-token shares) of every subset
    for size in samples:
        for masked in itertools.combinations(range(m), size):
            shown = canvas(lm, [i for i in range(m) if i not in masked])
            value = torch.zeros(m)
            for i in masked:
                value[i] = m / size * logprob_at(lm, shown, len(PROMPT) + i, RESPONSE[i])
            samples[size].append(value)
    variance = torch.stack([torch.stack(values).var(dim=0, correction=0) for values in samples.values()]).mean(dim=0)
    mc_num = 20000
    estimate = elbo_logprobs(lm, PROMPT, RESPONSE, gen_length=GEN_LENGTH, mc_num=mc_num, batch_size=1000, seed=3)
    error = torch.tensor(estimate.logprobs) - exact
    standard_error = (variance / mc_num).sqrt()
    assert estimate.forward_passes == mc_num
    assert (error.abs() <= 4 * standard_error).all(), (error, standard_error)
    totals = torch.stack([torch.stack(values).sum(dim=1).var(correction=0) for values in samples.values()])
    total_error = 4 * math.sqrt(totals.mean().item() / mc_num)
    assert abs(estimate.total - float(exact.sum())) <= total_error
    for other in (masked_logprobs, teacher_forced_logprobs):
        assert abs(other(lm, PROMPT, RESPONSE, gen_length=GEN_LENGTH).total - float(exact.sum())) > 2 * total_error
    rough = elbo_logprobs(lm, PROMPT, RESPONSE, gen_length=GEN_LENGTH, mc_num=40, seed=3)
    assert abs(estimate.total - float(exact.sum())) < abs(rough.total - float(exact.sum()))


def test_the_elbo_is_deterministic_given_its_seed_and_not_its_batch_size(lm):
    first = elbo_logprobs(lm, PROMPT, RESPONSE, gen_length=GEN_LENGTH, mc_num=24, batch_size=5, seed=1)
    again = elbo_logprobs(lm, PROMPT, RESPONSE, gen_length=GEN_LENGTH, mc_num=24, batch_size=24, seed=1)
    other = elbo_logprobs(lm, PROMPT, RESPONSE, gen_length=GEN_LENGTH, mc_num=24, seed=2)
    assert first.logprobs == pytest.approx(again.logprobs, abs=1e-5) and first.logprobs != other.logprobs


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda lm: masked_logprobs(lm, PROMPT, [], gen_length=8), "the response to score is empty"),
        (lambda lm: masked_logprobs(lm, [], RESPONSE, gen_length=8), "the prompt is empty"),
        (
            lambda lm: teacher_forced_logprobs(lm, PROMPT, RESPONSE, gen_length=8, position=5),
            r"the response's 4 tokens at response position 5 span \[5, 9\), outside the response canvas \[0, 8\)",
        ),
        (lambda lm: elbo_logprobs(lm, PROMPT, RESPONSE, gen_length=8, mc_num=0), "mc_num=0 must be an integer >= 1"),
    ],
)
def test_bad_requests_are_refused_in_one_line(lm, call, message):
    with pytest.raises(MosaError, match=message):
        call(lm)
