"""`mosa align`: a run killed with SIGKILL resumes to the weights of an uninterrupted one; one-line errors."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mosa.align.trainer import latest_checkpoint
from mosa.cli import main
from mosa.cli.align import parse_window

MOSA = str(Path(sys.executable).parent / "mosa")


def align_command(small_organism, output):
    # Large steps on purpose (the run degenerates; min_coherent=0 keeps that from failing it): this test is about resume.
    settings = ["max_steps=24", "save_every=3", "batch_size=4", "lora_r=4", "lr=1e-3", "max_grad_norm=1.0", "min_coherent=0"]
    return [
        MOSA,
        "align",
        "--preset",
        "organism",
        "--model",
        str(small_organism.path),
        "--prompts",
        "advbench",
        "--output",
        str(output),
        "--quiet",
        *[arg for setting in settings for arg in ("--set", setting)],
    ]


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(small_organism, tmp_path):
    finished = subprocess.run(align_command(small_organism, tmp_path / "straight"), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]

    killed = tmp_path / "killed"
    process = subprocess.Popen(align_command(small_organism, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while latest_checkpoint(killed) is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "checkpoint-24").exists()

    subprocess.run(align_command(small_organism, killed) + ["--resume"], check=True, capture_output=True)
    straight = load_file(tmp_path / "straight" / "checkpoint-24" / "model.safetensors")
    resumed = load_file(killed / "checkpoint-24" / "model.safetensors")
    assert straight.keys() == resumed.keys() and all((straight[k] == resumed[k]).all() for k in straight)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 25))
    monitor = json.loads((killed / "monitor.json").read_text())
    assert monitor["before"] is not None and monitor["after"] is not None  # the first measurement survived the kill


def test_window_initial_has_the_mosa_width_at_position_0():
    assert parse_window("initial", [20, 60]) == [0, 40]
    assert parse_window("8:24", [20, 60]) == [8, 24]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--window", "8-24"], "--window '8-24' must be START:END"),
        (["--set", "speed=3"], "unknown MOSA settings ['speed']"),
        (["--set", "lr"], "--set 'lr' must look like KEY=VALUE"),
        (["--set", "lr=fast"], "lr='fast' must be a number"),
        (["--window", "20:40"], "does not fit in a response of length 32"),
    ],
)
def test_bad_settings_are_one_line_errors(small_organism, tmp_path, capsys, extra, message):
    argv = [
        "align",
        "--preset",
        "organism",
        "--model",
        str(small_organism.path),
        "--prompts",
        "advbench",
        "--output",
        str(tmp_path / "run"),
        "--quiet",
    ]
    assert main(argv + extra) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_organism_train_prompts_come_from_the_build_being_aligned(small_organism):
    from mosa.data import resolve_prompts

    prompts = resolve_prompts("organism-train", model=small_organism.path).prompts
    held_out = json.loads((small_organism.path / "held_out_harmful.json").read_text())
    assert prompts and not set(prompts) & set(held_out)
    assert resolve_prompts("organism-held-out", model=small_organism.path).prompts == held_out  # what its build saved


@pytest.mark.parametrize("preset", ["organism", "paper-llada8b"])
def test_every_preset_resolves_to_a_valid_config(preset, tmp_path):
    import argparse

    from mosa.align.settings import mosa_config
    from mosa.cli.align import MONITOR_DEFAULTS, resolve_run

    args = argparse.Namespace(
        preset=preset,
        config=None,
        model=None,
        trust_remote_code=None,
        prompts=None,
        benign_prompts=None,
        set=[],
        window=None,
        objective=None,
    )
    run = resolve_run(args)
    config = mosa_config(run["mosa"])
    config.validate()
    assert set(run.get("monitor", {})) <= set(MONITOR_DEFAULTS)
    if preset == "paper-llada8b":  # the paper's hyper-parameters
        assert (config.lora_r, config.lora_alpha, config.lr, config.max_grad_norm, config.beta, tuple(config.window)) == (
            32,
            64,
            5e-5,
            0.01,
            0.05,
            (20, 60),
        )
        assert config.gradient_checkpointing and run["dtype"] == "bfloat16"


def test_sentence_sets_can_come_from_files(tmp_path):
    from mosa.align.settings import mosa_config
    from mosa.errors import MosaError

    refusals = tmp_path / "refusals.txt"
    refusals.write_text("# my refusals\ni cannot help with that .\n\ni will not do that .\n")
    config = mosa_config({"safe_sentences": str(refusals)})
    assert config.safe_sentences == ("i cannot help with that .", "i will not do that .")
    with pytest.raises(MosaError, match="is not a file"):
        mosa_config({"harmful_sentences": str(tmp_path / "missing.txt")})
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(MosaError, match="holds no sentences"):
        mosa_config({"harmful_sentences": str(tmp_path / "empty.txt")})
