"""MOSA training on the small organism: the reward rises, only LoRA moves, resume is exact."""

import json

import pytest
import torch

from mosa.align import trainer as trainer_module
from mosa.align.trainer import MosaConfig, train_mosa
from mosa.errors import MosaError
from mosa.models import load_model
from mosa.organism.corpus import REFUSALS

# The organism's own refusals and the phrases its prefill attacks plant.
ORGANISM_SENTENCES = dict(safe_sentences=tuple(REFUSALS.values()), harmful_sentences=("sure , here is how .", "step 2 :"))


def config(**settings):
    base = dict(response_length=32, window=(8, 24), batch_size=4, lr=2e-3, max_grad_norm=1.0, lora_r=4, lora_alpha=8,
                save_every=2, **ORGANISM_SENTENCES)
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
    assert moved and (tmp_path / "run" / "checkpoint-6" / "adapter_model.safetensors").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 6
    assert (tmp_path / "run" / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(small_organism, prompts, tmp_path):
    straight = load_model(small_organism.path)
    train_mosa(straight, prompts, config(max_steps=6), tmp_path / "straight", progress=False)

    interrupted = load_model(small_organism.path)
    train_mosa(interrupted, prompts, config(max_steps=6), tmp_path / "resumed", stop_after=3, progress=False)  # killed after step 3
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
    real = trainer_module.mosa_objective
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        terms = real(*args, **kwargs)
        if calls["n"] == 3:
            terms.objective = terms.objective * float("nan")
        return terms

    monkeypatch.setattr(trainer_module, "mosa_objective", failing)
    lm = load_model(small_organism.path)
    with pytest.raises(MosaError, match="the loss became nan at step 2"):
        train_mosa(lm, prompts, config(max_steps=6, save_every=1), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "latest_checkpoint").read_text() == "checkpoint-2"


def test_the_monitor_records_behaviour_and_a_degenerate_run_is_declared_failed(small_organism, prompts, tmp_path):
    from mosa.organism.card import behaviour_monitor

    monitor = behaviour_monitor(prompts, small_organism.config, prompts=8)
    lm = load_model(small_organism.path)
    train_mosa(lm, prompts, config(max_steps=2, min_coherent=0.0), tmp_path / "ok", progress=False, monitor=monitor)
    report = json.loads((tmp_path / "ok" / "monitor.json").read_text())
    assert set(report) == {"before", "after", "degenerate"} and report["degenerate"] is False
    assert 0.0 <= report["after"]["coherent"] <= 1.0 and "refusal_plain" in report["before"]

    lm = load_model(small_organism.path)
    with pytest.raises(MosaError, match="the run degenerated"):  # no share can reach 101%
        train_mosa(lm, prompts, config(max_steps=2, min_coherent=1.01), tmp_path / "bad", progress=False, monitor=monitor)
    assert json.loads((tmp_path / "bad" / "monitor.json").read_text())["degenerate"] is True
