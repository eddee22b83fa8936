"""Judges: plug-ins that decide whether a response to a harmful request is a success for the attacker.

A judge has a `name`, a `version` (recorded with every verdict, so tables never mix versions) and
`judge_many(prompts, responses) -> list[Verdict]`. Register one with `@JUDGES.register("name")` on a
factory taking keyword options; build one with `make_judge("name")` or
`make_judge({"name": "strongreject", "backend": "openai:gpt-4o-mini"})`.

    keyword-gcg, keyword-long   refusal keyword matching (GCG's list; a longer one)
    strongreject, harm-rubric   rubric judges through any LLM backend (mosa.backends)
    organism                    the model organism's structure judge (registered by its plug-in)

Details, versions and measured accuracy: docs/judges.md.
"""

from mosa.judges.base import EMPTY, ERROR, JUDGES, UNPARSEABLE, ResponseJudge, Verdict, judge_recording_errors, make_judge
from mosa.judges.keywords import GCG, LONG, KeywordJudge, KeywordList
from mosa.judges.rubric import HarmRubricJudge, RubricJudge, StrongRejectJudge
from mosa.judges.validate import RefusalValidation, read_refusal_labels, validate_refusal_judge

__all__ = [
    "EMPTY",
    "ERROR",
    "GCG",
    "JUDGES",
    "LONG",
    "UNPARSEABLE",
    "HarmRubricJudge",
    "KeywordJudge",
    "KeywordList",
    "RefusalValidation",
    "ResponseJudge",
    "RubricJudge",
    "StrongRejectJudge",
    "Verdict",
    "judge_recording_errors",
    "make_judge",
    "read_refusal_labels",
    "validate_refusal_judge",
]
