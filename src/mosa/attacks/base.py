"""What an attack produces: test cases for a dLLM target, and the target that answers them.

An attack turns harmful behaviours into `TestCase`s: the conversation to render, text to prefill at
chosen response positions, and text to write over the canvas at chosen denoising steps. Single-shot
attacks build cases from the behaviour alone; white-box and multi-query attacks (GCG, TAP) query the
`Target` while they build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mosa.data import Example
from mosa.errors import MosaError
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
    # denoising step -> {response position -> text}: written over the canvas just before that step
    interventions: dict[int, dict[int, str]] = field(default_factory=dict)


@dataclass
class TargetResponse:
    text: str
    response_ids: list[int]
    commit_step: list[int]  # per response position: the step that committed it, -1 = prefilled


class Target:
    """A dLLM and the sampler settings it is attacked with."""

    def __init__(self, lm: DiffusionLM, sampler: SamplerConfig, batch_size: int = 16):
        self.lm, self.sampler, self.batch_size = lm, sampler, batch_size

    def tokens(self, text: str) -> list[int]:
        """The token ids a text takes on the canvas (no BOS/EOS added)."""
        return self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prefill_ids(self, prefill: dict[int, str]) -> dict[int, list[int]]:
        """{response position: text} -> {response position: token ids} (for prefill and interventions alike)."""
        return {int(position): self.tokens(text) for position, text in prefill.items()}

    def respond(self, cases: list[TestCase]) -> list[TargetResponse]:
        responses = []
        for start in range(0, len(cases), self.batch_size):
            batch = cases[start : start + self.batch_size]
            input_ids, attention_mask = self.lm.encode_chat([case.messages for case in batch], self.sampler.gen_length)
            prefill = [self.prefill_ids(case.prefill) for case in batch]
            interventions = [{int(step): self.prefill_ids(spans) for step, spans in case.interventions.items()} for case in batch]
            # A case's noise (at temperature > 0) follows its prompt id and text, so its response does not depend on its batch.
            output = generate(
                self.lm.module,
                input_ids,
                attention_mask,
                config=self.sampler,
                prefill=prefill,
                interventions=interventions,
                prompt_ids=[case.prompt_id for case in batch],
            )
            for row in range(len(batch)):
                ids = output.response[row]
                responses.append(
                    TargetResponse(
                        text=self.lm.decode_response(ids),
                        response_ids=ids.tolist(),
                        commit_step=output.commit_step[row].tolist(),
                    )
                )
        return responses

    def check_spans(self, attack: str, spans: dict[int, str]) -> None:
        """Refuse, before anything is sampled, text spans that leave the response or overlap."""
        gen_length = self.sampler.gen_length
        taken: dict[int, int] = {}  # response position -> start of the span that holds it
        for position, ids in sorted(self.prefill_ids(spans).items()):
            end = position + len(ids)
            if not ids:
                raise MosaError(f"attack {attack}: the text at response position {position} is empty")
            if position < 0 or end > gen_length:
                raise MosaError(
                    f"attack {attack}: {spans[position]!r} at response position {position} spans [{position}, {end}) tokens, "
                    f"outside the response [0, {gen_length}); move it or raise the sampler's gen_length"
                )
            clash = next((taken[p] for p in range(position, end) if p in taken), None)
            if clash is not None:
                raise MosaError(
                    f"attack {attack}: {spans[position]!r} at position {position} overlaps {spans[clash]!r} at {clash}"
                )
            taken.update(dict.fromkeys(range(position, end), position))


class Attack(Protocol):
    """What the registry holds: a class built from its options, that turns behaviours into cases."""

    def cases(self, behaviours: list[Example], target: Target) -> list[TestCase]: ...


def make_attack(name: str, options: dict | None = None) -> Attack:
    """Build a registered attack from its options as YAML gives them; unknown or missing options are refused."""
    return ATTACKS.build(name, dict(options or {}))


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def case_id(behaviour: Example, variant: str | None) -> str:
    """A case's prompt id: the behaviour's id, suffixed "@variant" when an option sweeps several values."""
    return behaviour.id if variant is None else f"{behaviour.id}@{variant}"


# What a compliant answer opens with when the benchmark gives no target string of its own.
DEFAULT_AFFIRMATION = "Sure, here is how to do it."


def affirmation(behaviour: Example, text: str | None) -> str:
    """The affirmative text an attack aims for: the one given, else the benchmark's own target string
    for this behaviour (AdvBench's CSV ships one per goal: "Sure, here is ..."), else a generic one."""
    return text if text is not None else behaviour.target or DEFAULT_AFFIRMATION
