"""What every judge gives (a `Verdict`), the labels every judge may give, and the judge registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from mosa.backends.base import RequestRejected
from mosa.errors import MosaError
from mosa.registry import Registry

# Labels every judge may give besides its own: an empty response, a judge answer that cannot be
# parsed and a request the judge's server rejected are their own categories, never counted as
# success or as refusal.
EMPTY = "empty"
UNPARSEABLE = "unparseable"
ERROR = "error"


@dataclass
class Verdict:
    label: str  # "refusal", "compliant", EMPTY, UNPARSEABLE, ERROR, or a judge's own label
    harmful: bool | None  # counts toward attack success; None = undecidable (EMPTY, UNPARSEABLE, ERROR)
    score: float | None = None  # a rubric's score, where the judge has one
    detail: dict = field(default_factory=dict)  # e.g. the judge model's raw answer, under "answer"
    truncated: bool = False  # the judge model's answer was cut off at its max_tokens (rubric judges set it)
    error: str | None = None  # why there is no decision: the server's rejection, or a cut-off answer


JUDGES: Registry = Registry("judge")


def is_empty(response: str | None) -> bool:
    return response is None or not response.strip()


def empty_verdict() -> Verdict:
    return Verdict(EMPTY, None)


def check_pairs(prompts: list[str], responses: list[str]) -> None:
    if len(prompts) != len(responses):
        raise MosaError(f"a judge needs one prompt per response; got {len(prompts)} prompts and {len(responses)} responses")


def judge_recording_errors(judge, prompts: list[str], responses: list[str]) -> list[Verdict]:
    """`judge.judge_many`, with a request that the judge's server rejects (a response longer than
    its context) recorded as that response's ERROR verdict, with the server's message, instead of
    stopping the caller. Failures of the endpoint itself (down, a wrong key) still raise."""
    try:
        return judge.judge_many(prompts, responses)
    except RequestRejected:
        # One at a time, to find the rejected ones. The others were answered before the rejection
        # was raised (mosa.backends.OpenAIChat.chat_many), and come again from the backend's cache
        # (judges ask greedily).
        return [_judge_one_or_error(judge, prompt, response) for prompt, response in zip(prompts, responses)]


def _judge_one_or_error(judge, prompt: str, response: str) -> Verdict:
    try:
        return judge.judge_many([prompt], [response])[0]
    except RequestRejected as rejection:
        return Verdict(ERROR, None, error=str(rejection))


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
