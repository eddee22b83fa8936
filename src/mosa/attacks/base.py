"""What an attack produces: test cases for a dLLM target, and the target that answers them.

An attack turns harmful behaviours into `TestCase`s: the conversation to render, text to prefill at
chosen response positions, and text to write over the canvas at chosen denoising steps. Single-shot
attacks build cases from the behaviour alone; white-box and multi-query attacks (GCG, TAP) query the
`Target` while they build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mosa.models import DiffusionLM
from mosa.registry import Registry
from mosa.sampling import SamplerConfig, generate

ATTACKS: Registry = Registry("attack")


@dataclass
class TestCase:
    __test__ = False  # not a pytest class

    prompt_id: str
    behaviour: str  # the harmful request as the benchmark states it
    messages: list[dict[str, str]]  # the conversation the target sees (may hold fabricated turns)
    prefill: dict[int, str] = field(default_factory=dict)  # response position -> text, fixed from the start
    payload: dict = field(default_factory=dict)  # what the attack did, JSON-serialisable, for the record


@dataclass
class TargetResponse:
    text: str
    response_ids: list[int]
    commit_step: list[int]  # per response position: the step that committed it, -1 = prefilled


class Target:
    """A dLLM and the sampler settings it is attacked with."""

    def __init__(self, lm: DiffusionLM, sampler: SamplerConfig, batch_size: int = 16):
        self.lm, self.sampler, self.batch_size = lm, sampler, batch_size

    def prefill_ids(self, prefill: dict[int, str]) -> dict[int, list[int]]:
        return {int(position): self.lm.tokenizer(text, add_special_tokens=False)["input_ids"] for position, text in prefill.items()}

    def respond(self, cases: list[TestCase]) -> list[TargetResponse]:
        responses = []
        for start in range(0, len(cases), self.batch_size):
            batch = cases[start : start + self.batch_size]
            input_ids, attention_mask = self.lm.encode_chat([case.messages for case in batch])
            prefill = [self.prefill_ids(case.prefill) for case in batch]
            output = generate(self.lm.module, input_ids, attention_mask, config=self.sampler, prefill=prefill)
            for row in range(len(batch)):
                ids = output.response[row]
                responses.append(TargetResponse(
                    text=self.lm.decode_response(ids), response_ids=ids.tolist(), commit_step=output.commit_step[row].tolist(),
                ))
        return responses


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]

