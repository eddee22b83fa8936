"""MOSA training on the small organism: the reward rises, only LoRA moves, resume is exact."""

import json

import pytest
import torch

from mosa.align import trainer as trainer_module
from mosa.align.trainer import DegenerateRun, MosaConfig, curve_title, latest_checkpoint, train_mosa
from mosa.errors import MosaError
from mosa.models import load_model
from mosa.organism.corpus import REFUSALS

# The organism's own refusals and the phrases its prefill attacks plant.
ORGANISM_SENTENCES = dict(safe_sentences=tuple(REFUSALS.values()), harmful_sentences=("sure , here is how .", "step 2 :"))


def config(**settings):
    base = dict(
        response_length=32,
        window=(8, 24),
        batch_size=4,
        lr=2e-3,
        max_grad_norm=1.0,
        lora_r=4,
        lora_alpha=8,
        save_every=2,
        **ORGANISM_SENTENCES,
    )
    return MosaConfig(**{**base, **settings})


@pytest.fixture
def prompts(small_organism):
    return json.loads((small_organism.path / "held_out_harmful.json").read_text())[:24]


def test_a_few_steps_raise_the_reward_and_move_only_the_adapter(small_organism, prompts, tmp_path):
    lm = load_model(small_organism.path)
    base = {name: p.detach().clone() for name, p in lm.module.named_parameters()}
    records = train_mosa(lm, prompts, config(max_steps=6), tmp_path / "run", progress=False)
    assert abs(records[0]["kl"]) < 1e-4  # LoRA starts as the identity: the policy is the reference
    assert records[-1]["reward"] > records[0]["reward"]
    moved = {name for name, p in lm.module.named_parameters() if "lora_" in name}
    for name, p in lm.module.named_parameters():
        if "lora_" not in name:
            original = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base[original]), name
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in lm.module.named_parameters() if "lora_B" in n)
    assert moved and (tmp_path / "run" / "checkpoint-6" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 6
    assert (tmp_path / "run" / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(small_organism, prompts, tmp_path):
    straight = load_model(small_organism.path)
    train_mosa(straight, prompts, config(max_steps=6), tmp_path / "straight", progress=False)

    interrupted = load_model(small_organism.path)
    train_mosa(
        interrupted, prompts, config(max_steps=6), tmp_path / "resumed", stop_after=3, progress=False
    )  # killed after step 3
    resumed = load_model(small_organism.path)
    train_mosa(resumed, prompts, config(max_steps=6), tmp_path / "resumed", resume=True, progress=False)

    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 3 ran twice but is recorded once
    assert (tmp_path / "straight" / "metrics.jsonl").read_text() != ""


def test_impossible_windows_are_refused_before_training(small_organism, prompts, tmp_path):
    lm = load_model(small_organism.path)
    with pytest.raises(MosaError, match="does not fit in a response of length 32"):
        train_mosa(lm, prompts, config(window=(20, 40)), tmp_path / "run", progress=False)
    with pytest.raises(MosaError, match="does not fit in window"):
        train_mosa(lm, prompts, config(window=(8, 12)), tmp_path / "run", progress=False)


def test_a_nan_stops_the_run_and_keeps_the_last_good_checkpoint(small_organism, prompts, tmp_path, monkeypatch):
    from mosa.align import objectives

    real = objectives.mosa_objective
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        terms = real(*args, **kwargs)
        if calls["n"] == 3:
            terms.objective = terms.objective * float("nan")
        return terms

    monkeypatch.setattr(objectives, "mosa_objective", failing)
    lm = load_model(small_organism.path)
    with pytest.raises(MosaError, match="the loss became nan at step 2"):
        train_mosa(lm, prompts, config(max_steps=6, save_every=1), tmp_path / "run", progress=False)
    assert latest_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoint-2"


def test_the_monitor_records_behaviour_and_a_degenerate_run_is_declared_failed(small_organism, prompts, tmp_path):
    from mosa.organism.card import behaviour_monitor

    monitor = behaviour_monitor(prompts, small_organism.config, prompts=8)
    lm = load_model(small_organism.path)
    settings = dict(max_steps=2, monitor_every=1)
    train_mosa(lm, prompts, config(**settings, min_coherent=0.0), tmp_path / "ok", progress=False, monitor=monitor)
    report = json.loads((tmp_path / "ok" / "monitor.json").read_text())
    assert set(report) == {"before", "during", "after", "degenerate", "failure"} and report["degenerate"] is False
    assert report["failure"] is None and [entry["step"] for entry in report["during"]] == [1]
    assert 0.0 <= report["after"]["coherent"] <= 1.0 and "refusal_plain" in report["before"]

    lm = load_model(small_organism.path)
    with pytest.raises(DegenerateRun, match="the run degenerated: .* at step 1") as stopped:  # no share reaches 101%
        train_mosa(lm, prompts, config(**settings, min_coherent=1.01), tmp_path / "bad", progress=False, monitor=monitor)
    report = json.loads((tmp_path / "bad" / "monitor.json").read_text())
    assert report["degenerate"] is True and report["failure"] == stopped.value.failure
    assert (
        report["failure"]["when"] == 1 and report["failure"]["floor"] == 1.01 and report["failure"]["setting"] == "min_coherent"
    )
    # What it stopped with is kept, for the failure to be examined (the demo evaluates it, marked degenerate).
    assert (tmp_path / "bad" / "adapter" / "adapter_model.safetensors").is_file()
    assert len((tmp_path / "bad" / "metrics.jsonl").read_text().splitlines()) == 1


def test_each_reward_curve_is_titled_with_its_own_run():
    mosa, initial = config(window=(8, 24), beta=1.0), config(window=(0, 16), beta=1.0)
    assert curve_title(mosa, None) == "MOSA: window [8, 24) of 32 positions, beta 1.0"
    assert curve_title(initial, None) == "Initial Alignment: window [0, 16) of 32 positions, beta 1.0"
    failure = {"when": "after", "figure": "coherent", "value": 0.647, "setting": "min_coherent", "floor": 0.9}
    assert curve_title(initial, failure).endswith("\nstopped after training: degenerate (64.7% coherent, min_coherent 90%)")


def test_full_fine_tuning_moves_every_weight_against_a_frozen_copy_and_writes_a_loadable_checkpoint(
    small_organism, prompts, tmp_path
):
    lm = load_model(small_organism.path)
    base = {name: p.detach().clone() for name, p in lm.module.named_parameters()}
    records = train_mosa(lm, prompts, config(finetune="full", lr=1e-4, max_steps=3), tmp_path / "run", progress=False)
    assert abs(records[0]["kl"]) < 1e-4 and records[-1]["kl"] > 0  # the frozen copy stays behind as the policy moves
    moved = [name for name, p in lm.module.named_parameters() if not torch.equal(p, base[name])]
    assert len(moved) == len(base)
    merged = load_model(tmp_path / "run" / "merged")
    canvas = torch.tensor([[1, 2, 3, lm.mask_id, lm.mask_id]])
    assert torch.allclose(merged.logits(canvas), lm.logits(canvas), atol=1e-5)


def test_save_merged_folds_the_adapter_into_a_standard_checkpoint(small_organism, prompts, tmp_path):
    lm = load_model(small_organism.path)
    train_mosa(lm, prompts, config(max_steps=2, save_merged=True), tmp_path / "run", progress=False)
    canvas = torch.tensor([[1, 2, 3, lm.mask_id, lm.mask_id]])
    merged = load_model(tmp_path / "run" / "merged")
    assert torch.allclose(merged.logits(canvas), lm.logits(canvas), atol=1e-5)
    assert not torch.allclose(merged.logits(canvas), load_model(small_organism.path).logits(canvas), atol=1e-3)


def test_gradient_checkpointing_changes_memory_not_the_result(small_organism, prompts, tmp_path):
    runs = {}
    for checkpointing in (False, True):
        lm = load_model(small_organism.path)
        train_mosa(
            lm, prompts, config(max_steps=2, gradient_checkpointing=checkpointing), tmp_path / str(checkpointing), progress=False
        )
        runs[checkpointing] = {name: p.detach().clone() for name, p in lm.module.named_parameters() if "lora_" in name}
        assert any(getattr(part, "gradient_checkpointing", False) for part in lm.module.modules()) == checkpointing
    assert all(torch.allclose(runs[False][name], runs[True][name], atol=1e-6) for name in runs[False])


def test_the_benign_kl_is_logged_and_holds_benign_outputs_to_the_reference(small_organism, prompts, tmp_path):
    from mosa.organism.corpus import utility_items

    benign = [item.prompt for item in utility_items()][:24]
    with pytest.raises(MosaError, match="benign_beta > 0 needs benign prompts"):
        train_mosa(load_model(small_organism.path), prompts, config(benign_beta=1.0), tmp_path / "none", progress=False)
    drift = {}
    for benign_beta in (0.0, 5.0):
        lm = load_model(small_organism.path)
        records = train_mosa(
            lm,
            prompts,
            config(max_steps=4, benign_beta=benign_beta),
            tmp_path / str(benign_beta),
            benign_prompts=benign,
            progress=False,
        )
        assert ("kl_benign" in records[0]) == (benign_beta > 0)
        from mosa.align.trainer import benign_kl

        with torch.no_grad():
            drift[benign_beta] = benign_kl(lm, lm.module, None, benign, config()).mean().item()
    assert drift[5.0] < drift[0.0]  # the penalty keeps benign responses nearer the reference


def test_a_save_cut_short_leaves_the_last_whole_checkpoint_and_resume_is_exact(small_organism, prompts, tmp_path, monkeypatch):
    straight = load_model(small_organism.path)
    train_mosa(straight, prompts, config(max_steps=6), tmp_path / "straight", progress=False)

    real = trainer_module.TrainingProgress.state_dict

    def cut_short(progress):  # the last file save_state writes: the model, optimizer and RNG files are there
        if progress.step == 4:
            raise KeyboardInterrupt("killed while saving step 4")
        return real(progress)

    monkeypatch.setattr(trainer_module.TrainingProgress, "state_dict", cut_short)
    with pytest.raises(KeyboardInterrupt):
        train_mosa(load_model(small_organism.path), prompts, config(max_steps=6), tmp_path / "cut", progress=False)
    assert (tmp_path / "cut" / ".checkpoint-4.partial" / "model.safetensors").is_file()
    assert latest_checkpoint(tmp_path / "cut") == tmp_path / "cut" / "checkpoint-2"

    monkeypatch.undo()
    resumed = load_model(small_organism.path)
    train_mosa(resumed, prompts, config(max_steps=6), tmp_path / "cut", resume=True, progress=False)
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert sorted(path.name for path in (tmp_path / "cut").glob("*checkpoint-*")) == ["checkpoint-6"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_of_other_trainable_weights_or_processes_is_refused(small_organism, prompts, tmp_path):
    train_mosa(load_model(small_organism.path), prompts, config(max_steps=2), tmp_path / "run", progress=False)
    with pytest.raises(MosaError, match=r"checkpoint-2 holds other trainable weights than this run \(\d+ differ, e.g. .*lora_"):
        train_mosa(
            load_model(small_organism.path), prompts, config(max_steps=4, lora_r=8), tmp_path / "run", resume=True, progress=False
        )
    with pytest.raises(MosaError, match="written by 2 process.es., this run has 1; resume it on as many"):
        trainer_module.TrainingProgress(processes=1).load_state_dict({"step": 2, "processes": 2})
