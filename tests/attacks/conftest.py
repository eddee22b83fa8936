"""A tiny random dLLM as the target, and behaviours in its word vocabulary (tests/conftest.py WORDS)."""

import pytest

from mosa.attacks import Target
from mosa.data import Example
from mosa.judges import Verdict
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


class RecordingTarget(Target):
    """A target that keeps what it was asked to answer: `batches`, each batch's last user turns, and
    `sent`, every conversation; it fails, as a killed run would, once it has answered `fail_after` cases."""

    def __init__(self, *args, fail_after=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches, self.sent, self.fail_after = [], [], fail_after

    def respond(self, cases):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise RuntimeError("killed")
        self.batches.append([case.messages[-1]["content"] for case in cases])
        self.sent.extend(case.messages for case in cases)
        return super().respond(cases)


class ScriptedScorer:
    """A judge giving the scores of `script` in turn, one per response, harmful at 5; it keeps the
    (request, response) pairs it judged."""

    name, version = "scripted", "scripted-1"

    def __init__(self, *script):
        self.script, self.judged = list(script), []

    @property
    def prompts(self):
        return [prompt for prompt, _ in self.judged]

    def judge_many(self, prompts, responses):
        self.judged.extend(zip(prompts, responses))
        return [Verdict("compliant" if s >= 5 else "refusal", s >= 5, float(s)) for s in (self.script.pop(0) for _ in prompts)]
