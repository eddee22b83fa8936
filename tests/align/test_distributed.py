"""Two processes under `accelerate launch` (CPU, gloo) train as one process with the doubled batch, also when
stopped and resumed from their checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from tests.conftest import accelerate_launch

WORKER = str(Path(__file__).with_name("ddp_run.py"))


def test_two_processes_stopped_and_resumed_match_one_process_with_the_doubled_batch(small_organism, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(json.loads((small_organism.path / "held_out_harmful.json").read_text())[:24]))
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = [sys.executable, WORKER, str(small_organism.path), str(prompts), str(tmp_path / "one"), "4"]

    def two(part):
        return accelerate_launch(WORKER, str(small_organism.path), str(prompts), str(tmp_path / "two"), "2", part)

    def launch(command):
        finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
        assert finished.returncode == 0, finished.stderr[-3000:]

    launch(one)
    launch(two("first-2"))  # the pair stops after 2 of its 3 steps, as if killed there
    saved = {path.name for path in (tmp_path / "two" / "checkpoint-2").iterdir()}
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= saved  # each process saved its own random states
    launch(two("rest"))  # and resumes from its checkpoint

    single = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    pair = load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors")
    assert single.keys() == pair.keys()
    for name in single:
        assert (single[name] - pair[name]).abs().max() < 1e-4, name
    assert any(tensor.abs().sum() > 0 for name, tensor in pair.items() if "lora_B" in name)  # it trained
    metrics = [(tmp_path / run / "metrics.jsonl").read_text().splitlines() for run in ("one", "two")]
    assert len(metrics[0]) == len(metrics[1]) == 3
    for a, b in zip(*metrics):
        a, b = json.loads(a), json.loads(b)
        assert abs(a["reward"] - b["reward"]) < 1e-3 and abs(a["kl"] - b["kl"]) < 1e-4
