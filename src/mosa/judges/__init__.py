"""Judges: plug-ins that decide whether a response to a harmful request is a success for the attacker.

A judge has a `name`, a `version` (recorded with every verdict, so tables never mix versions) and
`judge_many(prompts, responses) -> list[Verdict]`. Register one with `@JUDGES.register("name")` on a
factory taking keyword options; build one with `JUDGES.get(name)(**options)`.
"""

from dataclasses import dataclass, field

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

__all__ = ["EMPTY", "JUDGES", "UNPARSEABLE", "Verdict"]
