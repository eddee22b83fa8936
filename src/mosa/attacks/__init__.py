"""Attacks as plug-ins: `@ATTACKS.register("name")` on a class whose constructor takes the attack's
options (from YAML) and whose `cases(behaviours, target) -> list[TestCase]` builds the test cases.
`behaviours` are `mosa.data.Example`s; `target` is the `Target` under attack (ignored by attacks that
need no queries)."""

from mosa.attacks import tap  # noqa: F401  (importing an attack's module registers it)
from mosa.attacks.base import ATTACKS, Target, TargetResponse, TestCase, user_turn

__all__ = ["ATTACKS", "Target", "TargetResponse", "TestCase", "user_turn"]
