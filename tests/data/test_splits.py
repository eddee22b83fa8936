"""Splits are decided per example id, never move when other rows change, and never leak a prompt."""

import random

import pytest

from mosa.data import Example, load_dataset, normalise_prompt, split_examples
from mosa.errors import MosaError
from tests.data.conftest import shared_data_or_skip


def make(n, start=0, prefix="p"):
    return [Example(id=f"toy/{i}", prompt=f"{prefix} prompt number {i}", source="toy") for i in range(start, start + n)]


def sides(train, evaluation):
    return {e.id: "train" for e in train} | {e.id: "eval" for e in evaluation}


def test_deterministic_and_disjoint():
    examples = make(2000)
    train, evaluation = split_examples(examples, eval_fraction=0.2, seed=13)
    assert (train, evaluation) == split_examples(examples, eval_fraction=0.2, seed=13)
    assert not {e.id for e in train} & {e.id for e in evaluation}
    assert len(train) + len(evaluation) == 2000
    assert 0.17 < len(evaluation) / 2000 < 0.23
    assert train == [e for e in examples if e in train]  # input order kept
    other_seed = split_examples(examples, eval_fraction=0.2, seed=14)[1]
    assert {e.id for e in other_seed} != {e.id for e in evaluation}


def test_a_prompt_keeps_its_side_when_rows_are_added_or_reordered():
    examples = make(500)
    before = sides(*split_examples(examples, eval_fraction=0.3, seed="run-1"))
    grown = make(300, start=500) + examples
    random.Random(0).shuffle(grown)
    after = sides(*split_examples(grown, eval_fraction=0.3, seed="run-1"))
    assert all(after[key] == side for key, side in before.items())
    removed = sides(*split_examples(examples[::2], eval_fraction=0.3, seed="run-1"))
    assert all(before[key] == side for key, side in removed.items())


def test_identical_prompt_text_lands_on_one_side_only():
    base = make(400)
    # Same text as base rows, written differently (case, spacing, NFKC): normalised, they are equal.
    copies = [
        Example(id=f"copy/{i}", prompt=f"  P   PROMPT number\t{i} ".replace("1", "\uff11"), source="copy") for i in range(400)
    ]
    assert normalise_prompt(copies[1].prompt) == normalise_prompt(base[1].prompt)
    train, evaluation = split_examples(base + copies, eval_fraction=0.5, seed=0)
    assert not {normalise_prompt(e.prompt) for e in train} & {normalise_prompt(e.prompt) for e in evaluation}
    assert evaluation  # some pairs still hashed to evaluation on both ids


def test_a_duplicate_can_pull_a_prompt_into_training_but_never_into_evaluation():
    examples = make(300)
    train, evaluation = split_examples(examples, eval_fraction=0.5, seed=1)
    duplicates = [Example(id=f"dup/{e.id}", prompt=e.prompt, source="dup") for e in examples]
    train2, _ = split_examples(examples + duplicates, eval_fraction=0.5, seed=1)
    assert {e.id for e in train} <= {e.id for e in train2}


def test_bad_arguments():
    with pytest.raises(MosaError, match=r"eval_fraction=1.5 must be between 0 and 1"):
        split_examples(make(3), eval_fraction=1.5, seed=0)
    twice = make(2) + make(1)
    with pytest.raises(MosaError, match="example id 'toy/0' occurs twice"):
        split_examples(twice, eval_fraction=0.5, seed=0)
    assert split_examples(make(5), eval_fraction=0.0, seed=0)[1] == []
    assert split_examples(make(5), eval_fraction=1.0, seed=0)[0] == []


def test_split_of_real_benchmarks_is_clean():
    data_dir = shared_data_or_skip()
    examples = load_dataset("harmbench", functional="all", data_dir=data_dir) + load_dataset("advbench", data_dir=data_dir)
    train, evaluation = split_examples(examples, eval_fraction=0.25, seed=0)
    assert len(train) + len(evaluation) == 840
    assert not {normalise_prompt(e.prompt) for e in train} & {normalise_prompt(e.prompt) for e in evaluation}
