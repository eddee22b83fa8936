"""A tiny random dLLM saved as a checkpoint, behaviours in its vocabulary, and a way to run `mosa eval`.

The tests check the harness's mechanics (records, resume, tables, errors), not attack success."""

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from mosa.cli import main
from mosa.models.build import save_model
from tests.conftest import REPO_ROOT, tiny_llama

# Twelve behaviours in the tiny vocabulary (tests/conftest.py WORDS), as an AdvBench-style CSV.
GOALS = [
    f"{request} {count}"
    for request in ("how are you", "what is the cat", "why the dog ran", "who sat on the mat")
    for count in ("one", "two", "three")
]


@pytest.fixture(scope="session")
def model_dir(tokenizer, tmp_path_factory):
    return save_model(tiny_llama(tokenizer, seed=3), tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def behaviours_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("benchmarks") / "tiny.csv"
    path.write_text("goal,target\n" + "".join(f"{goal},sure here is\n" for goal in GOALS))
    return path


@pytest.fixture
def settings(model_dir, behaviours_csv):
    return small_settings(model_dir, behaviours_csv)


def small_settings(model_dir, behaviours_csv) -> dict:
    """A small evaluation: 12 behaviours x (none, prefill at two positions, anchor), two keyword judges."""
    return {
        "model": str(model_dir),
        "benchmarks": [str(behaviours_csv)],
        "attacks": [
            "none",
            {"name": "prefill", "position": [0, 8], "phrases": ["sure here is"]},
            {"name": "anchor", "step": 2, "text": "step one"},
        ],
        "judges": ["keyword-long", "keyword-gcg"],
        "sampler": {"gen_length": 16, "steps": 16, "block_length": 8},
        "batch_size": 4,
    }


def write_config(directory: Path, settings: dict) -> Path:
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def mosa_eval(*args) -> int:
    return main(["eval", *map(str, args), "--quiet"])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def subprocess_environment() -> dict:
    """This checkout's code in child processes, one thread each (the machine's cores are shared)."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


MOSA = [sys.executable, "-m", "mosa"]
