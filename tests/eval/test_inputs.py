"""What an evaluation is made of: a benchmark that shares prompts with the adapter's training prompts is
refused before any model loads, and a run resumed on a changed model is refused; both in one line."""

import json
import shutil

import pytest

from mosa.align.trainer import MosaConfig, train_mosa
from mosa.data import resolve_prompts
from mosa.eval import runner
from mosa.models import load_model
from mosa.models.build import save_model
from tests.conftest import tiny_llama
from tests.eval.conftest import mosa_eval, write_config


@pytest.fixture(scope="module")
def adapter(model_dir, behaviours_csv, tmp_path_factory):
    """A LoRA adapter trained by mosa align's trainer on the training side of the tiny benchmark."""
    run = tmp_path_factory.mktemp("aligned") / "run"
    config = MosaConfig(
        response_length=16,
        window=(0, 16),
        max_steps=1,
        batch_size=2,
        lora_r=2,
        lora_alpha=4,
        save_every=1,
        safe_sentences=("cannot answer this question",),
        harmful_sentences=("sure here",),
    )
    train_mosa(load_model(model_dir), resolve_prompts(f"{behaviours_csv}:train"), config, run, progress=False)
    return run / "adapter"


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runner, "load_target_model", refuse)


def quick(settings, **changes):
    return {**settings, "attacks": ["none"], "judges": ["keyword-gcg"], **changes}


def test_a_benchmark_the_adapter_trained_on_is_refused_before_the_model_loads(
    settings, adapter, behaviours_csv, tmp_path, capsys, no_model
):
    recorded = json.loads((adapter / "inputs.json").read_text())["prompts"]
    assert recorded["spec"] == f"{behaviours_csv}:train" and recorded["count"] == 7
    config = write_config(tmp_path, quick(settings))
    assert mosa_eval("--config", config, "--adapter", adapter, "--output", tmp_path / "run") == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert error == (
        f"mosa: error: adapter {adapter} was trained on prompts the benchmarks hold (tiny shares 7 of its 12 "
        f"prompts; training prompts: {behaviours_csv}:train); evaluate on prompts it never saw, or pass "
        "--allow-train-overlap (--set allow_train_overlap=true) to measure them anyway"
    )
    assert not (tmp_path / "run").exists()


def test_the_held_out_side_is_evaluated_and_an_overlap_can_be_allowed(settings, adapter, behaviours_csv, tmp_path, capsys):
    held_out = write_config(tmp_path, quick(settings, benchmarks=[f"{behaviours_csv}:eval"]))
    assert mosa_eval("--config", held_out, "--adapter", adapter, "--output", tmp_path / "held-out") == 0
    inputs = json.loads((tmp_path / "held-out" / "inputs.json").read_text())
    assert inputs["benchmarks"]["tiny"]["spec"] == f"{behaviours_csv}:eval" and inputs["benchmarks"]["tiny"]["count"] == 5
    assert inputs["adapter"]["content"] and "adapter_model.safetensors" in inputs["adapter"]["files"]

    whole = write_config(tmp_path, quick(settings, limit=2))
    assert mosa_eval("--config", whole, "--adapter", adapter, "--output", tmp_path / "allowed", "--allow-train-overlap") == 0
    assert "tiny shares 2 of its 2 prompts with the training prompts of adapter" in capsys.readouterr().out
    assert json.loads((tmp_path / "allowed" / "config.json").read_text())["allow_train_overlap"] is True


def test_a_run_resumed_on_a_changed_model_is_refused_naming_the_file(settings, model_dir, tmp_path, capsys, tokenizer):
    model = shutil.copytree(model_dir, tmp_path / "model")
    config = write_config(tmp_path, quick(settings, model=str(model), limit=2))
    assert mosa_eval("--config", config, "--output", tmp_path / "run") == 0
    fingerprint = json.loads((tmp_path / "run" / "inputs.json").read_text())["model"]
    assert fingerprint["content"] and fingerprint["files"]["config.json"]["size"] > 0

    save_model(tiny_llama(tokenizer, seed=4), model)  # same architecture and sizes, other weights
    assert mosa_eval("--output", tmp_path / "run") == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert error.startswith(
        f"mosa: error: {tmp_path / 'run'} was run on other inputs (model: the content of {model} changed "
        "(model.safetensors)); use a new --output directory, or restore the model"
    )
