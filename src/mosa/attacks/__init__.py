"""Attacks as plug-ins: `@ATTACKS.register("name")` on a class whose constructor takes the attack's
options (from YAML) and whose `cases(behaviours, target) -> list[TestCase]` builds the test cases.
`behaviours` are `mosa.data.Example`s; `target` is the `Target` under attack (ignored by attacks that
need no queries). `make_attack(name, options)` builds one by name. Details: docs/attacks.md.

    target = Target(lm, lm.sampler_config(gen_length=128, steps=128, block_length=32))
    attack = make_attack("prefill", {"position": [0, 40, 80], "phrases": "paper"})
    responses = target.respond(attack.cases(behaviours, target))
"""

from mosa.attacks import advprefix, aos, avatar, canvas, dia, ept, gcg, pal, prompting, speakeasy, tap  # noqa: F401  (importing an attack's module registers it)
from mosa.attacks.base import ATTACKS, Attack, Target, TargetResponse, TestCase, make_attack, user_turn

__all__ = ["ATTACKS", "Attack", "Target", "TargetResponse", "TestCase", "make_attack", "user_turn"]
