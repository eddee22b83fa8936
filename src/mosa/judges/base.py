"""What every judge gives (a `Verdict`), the labels every judge may give, and the judge registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from mosa.errors import MosaError
from mosa.registry import Registry

# Labels every judge may give besides its own: an empty response and a judge answer that cannot be
# parsed are their own categories, never counted as success or as refusal.
EMPTY = "empty"
UNPARSEABLE = "unparseable"


@dataclass
class Verdict:
    label: str  # "refusal", "compliant", EMPTY, UNPARSEABLE, or a judge's own label
    harmful: bool | None  # counts toward attack success; None = undecidable (EMPTY, UNPARSEABLE)
    score: float | None = None  # a rubric's score, where the judge has one
    detail: dict = field(default_factory=dict)  # e.g. the judge model's raw answer


JUDGES: Registry = Registry("judge")


def is_empty(response: str | None) -> bool:
    return response is None or not response.strip()


def empty_verdict() -> Verdict:
    return Verdict(EMPTY, None)


def check_pairs(prompts: list[str], responses: list[str]) -> None:
    if len(prompts) != len(responses):
        raise MosaError(f"a judge needs one prompt per response; got {len(prompts)} prompts and {len(responses)} responses")


class ResponseJudge(ABC):
    """A judge that decides from the response alone, without an LLM: an empty response is EMPTY,
    any other goes to `decide`."""

    name: str
    version: str

    def judge_many(self, prompts: list[str], responses: list[str]) -> list[Verdict]:
        check_pairs(prompts, responses)
        return [self.judge(response) for response in responses]

    def judge(self, response: str) -> Verdict:
        return empty_verdict() if is_empty(response) else self.decide(response)

    @abstractmethod
    def decide(self, response: str) -> Verdict: ...


_EXAMPLE = '{"name": "strongreject", "backend": "openai:MODEL@URL"} (on the command line: --backend openai:MODEL@URL)'


def make_judge(spec):
    """A judge from a name ("keyword-gcg"), a mapping {"name": ..., **options}, or a judge object (returned as it is)."""
    if hasattr(spec, "judge_many"):
        return spec
    if isinstance(spec, str):
        return JUDGES.build(spec, {}, example=_EXAMPLE)
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return JUDGES.build(spec["name"], {key: value for key, value in spec.items() if key != "name"}, example=_EXAMPLE)
    raise MosaError(f"a judge is a name ({', '.join(JUDGES.names())}) or a mapping with a name and options, not {spec!r}")
