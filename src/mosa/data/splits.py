"""Deterministic train / evaluation splits that cannot leak a training prompt into evaluation.

Each example's side comes from a hash of (seed, example id), not from its position, so adding,
removing or reordering other rows never moves it. Prompts are then grouped by their normalised
text (NFKC, case-folded, whitespace collapsed): a group goes to evaluation only if every member
hashed there, otherwise the whole group trains. So an identical prompt text is on one side only,
and adding a row can move a prompt from evaluation to training but never the other way: what a
model was trained on under a seed never turns up in a later evaluation under that seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mosa.data.records import Example, normalise_prompt
from mosa.errors import MosaError


def split_examples(examples: Sequence[Example], *, eval_fraction: float, seed: int | str) -> tuple[list[Example], list[Example]]:
    """(train, eval), each in input order; about `eval_fraction` of the prompts are for evaluation."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise MosaError(f"eval_fraction={eval_fraction} must be between 0 and 1")
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise MosaError(f"example id {example.id!r} occurs twice; splits are decided per id, so ids must be unique")
        seen.add(example.id)

    wants_eval = {example.id: eval_score(example.id, seed) < eval_fraction for example in examples}
    group_eval: dict[str, bool] = {}
    for example in examples:
        key = normalise_prompt(example.prompt)
        group_eval[key] = group_eval.get(key, True) and wants_eval[example.id]
    train, evaluation = [], []
    for example in examples:
        (evaluation if group_eval[normalise_prompt(example.prompt)] else train).append(example)
    return train, evaluation


def eval_score(example_id: str, seed: int | str) -> float:
    """A number in [0, 1) fixed by (seed, id): the example is for evaluation if it is below eval_fraction."""
    digest = hashlib.sha256(f"{seed}\x00{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
