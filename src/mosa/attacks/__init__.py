"""Attacks as plug-ins: `@ATTACKS.register("name")` on a class whose constructor takes the attack's
options (from YAML) and whose `cases(behaviours, target) -> list[TestCase]` builds the test cases.
`behaviours` are `mosa.data.Example`s; `target` is the `Target` under attack (ignored by attacks that
need no queries)."""

from mosa.attacks.base import Target, TargetResponse, TestCase, user_turn
from mosa.registry import Registry

ATTACKS: Registry = Registry("attack")

# Importing an attack's module registers it (after ATTACKS exists, which the modules import).
from mosa.attacks import tap  # noqa: E402, F401

__all__ = ["ATTACKS", "Target", "TargetResponse", "TestCase", "user_turn"]
