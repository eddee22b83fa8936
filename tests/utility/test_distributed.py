"""`mosa utility` under `accelerate launch` on two processes (CPU, gloo): lm-eval deals each process its
share of the documents through the mosa model's gather and barrier, the main process alone writes, and
every answer equals the one-process run's."""

import json
import os
import subprocess

from mosa.cli import main
from tests.conftest import accelerate_launch


def answers(run):
    """doc_id -> the model's answers, from lm-eval's samples file of the run's utility task."""
    [samples] = (run / "tasks" / "utility").rglob("samples_*.jsonl")
    return {record["doc_id"]: record["resps"] for record in map(json.loads, samples.read_text().splitlines())}


def test_two_processes_answer_as_one(tmp_path):
    settings = ["--config", "organism", "--set", "limit=24", "--quiet"]
    assert main(["utility", *settings, "--output", str(tmp_path / "one")]) == 0

    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = accelerate_launch("-m", "mosa", "utility", *settings, "--output", str(tmp_path / "two"))
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("| organism |") == 1  # the table, printed by the main process alone

    one, two = (json.loads((tmp_path / run / "tasks" / "utility" / "result.json").read_text()) for run in ("one", "two"))
    assert two["items"] == one["items"] == 24
    assert two["metrics"] == one["metrics"]
    assert answers(tmp_path / "two") == answers(tmp_path / "one")
    assert sorted(path.name for path in (tmp_path / "two" / "tasks" / "utility").glob("cache_rank*.db")) == [
        "cache_rank0.db",
        "cache_rank1.db",
    ]  # each process answered its own share


def test_the_model_gathers_nothing_in_one_process():
    from mosa.utility.model import MosaLM

    lm = MosaLM(model="organism", gen_length=32, steps=32, block_length=8, device="cpu")
    assert (lm.rank, lm.world_size, lm.accelerator) == (0, 1, None)
    assert lm.gather_object({"a": 1}) == [{"a": 1}]
