"""A tiny random dLLM as the target, and behaviours in its word vocabulary (tests/conftest.py WORDS)."""

import pytest

from mosa.attacks import Target
from mosa.data import Example
from tests.conftest import tiny_llama

BEHAVIOURS = [
    Example(id="b1", prompt="how are you", source="test"),
    Example(id="b2", prompt="what is the cat", source="test", target="sure here is the cat"),
]


@pytest.fixture(scope="package")
def lm(tokenizer):
    return tiny_llama(tokenizer, seed=31)


def make_target(lm, gen_length=24, steps=24, block_length=8):
    return Target(lm, lm.sampler_config(gen_length=gen_length, steps=steps, block_length=block_length), batch_size=4)


@pytest.fixture
def target(lm):
    return make_target(lm)


def assert_on_canvas(target, case, response, spans, committed_at):
    """Every {position: text} span holds its tokens in the response, committed at `committed_at`
    (-1 for a prefill); every other position holding a token was decoded by the model at some step.
    (A random model may choose the mask token itself; such a position stays masked, as in LLaDA.)"""
    fixed = set()
    for position, text in spans.items():
        ids = target.tokens(text)
        assert response.response_ids[position : position + len(ids)] == ids, (case.prompt_id, position, text)
        assert response.commit_step[position : position + len(ids)] == [committed_at] * len(ids)
        fixed.update(range(position, position + len(ids)))
    mask_id = target.lm.mask_id
    decoded = [p for p, token in enumerate(response.response_ids) if p not in fixed and token != mask_id]
    assert all(response.commit_step[p] >= 0 for p in decoded)
