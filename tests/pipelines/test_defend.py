"""`mosa defend compare` end to end on the small test organism with a tiny plan: every defence is
trained (through `mosa align`'s command line) or set on the sampler, evaluated under every attack and
measured through lm-eval; a run the behaviour monitor stops is kept and marked; the table, csv, plot
and report hold what the runs wrote; a comparison killed part way continues without redoing a stage."""

import csv
import json

import pytest

from mosa.cli import main
from mosa.errors import MosaError
from mosa.organism.plugin import OrganismProfile
from mosa.pipelines import defend
from mosa.pipelines.defend import DEFENCES, SAMPLER, TRAINED, DefendPlan, run_compare

ATTACKS = ("none", "prefill@0", "prefill@13", "pad", "dija", "anchor", "dialogue", "prefix-forcing")


def scripted_monitor(coherent: list[float]):
    """The organism's monitor measures a behaviour card per call (minutes on a busy CPU); this one answers at
    once with the coherent shares given, in order, across every run."""
    shares = iter(coherent)
    return lambda profile, model, progress: ((lambda lm: {"coherent": next(shares)}), {"harmful": None})


class Killed(Exception):
    pass


def test_the_comparison_runs_every_defence_and_a_killed_one_continues(small_organism, tmp_path, monkeypatch):
    plan = DefendPlan.quick().with_settings(["eval_prompts=4", "utility_items=6", "align.max_steps=2", "align.save_every=1"])
    assert (
        plan.organism is not None and defend.MODEL_PROFILES.get("organism").build_directory(plan.organism) == small_organism.path
    )
    # Each run is checked before and after training; A2D-style (the third run) fails after.
    monkeypatch.setattr(OrganismProfile, "monitor", scripted_monitor([0.98, 0.98, 0.98, 0.98, 0.98, 0.5, 0.98, 0.98]))
    # An EOS monitor that ends every response at its first step: each answer is empty, or holds only what an
    # attack wrote into it, so it must count as no attack success and as an over-refusal.
    monkeypatch.setitem(SAMPLER, "eos-monitor", [{"name": "eos-monitor", "threshold": 0.0}])
    measure = defend.measure_utility

    def killed_at_the_last_utility(path, name, *rest):
        if name == DEFENCES[-1]:
            raise Killed
        return measure(path, name, *rest)

    monkeypatch.setattr(defend, "measure_utility", killed_at_the_last_utility)
    messages = []
    with pytest.raises(Killed):
        run_compare(tmp_path / "defend", plan, progress=False, log=messages.append)
    assert any("mosa align --preset organism" in m and "--objective primed-mosa" in m for m in messages)
    assert any(m.startswith("      A2D-style: DEGENERATE") for m in messages)
    adapters = {
        name: tmp_path / "defend" / "align" / defend.slug(name) / "adapter" / "adapter_model.safetensors" for name in TRAINED
    }
    written = {name: path.stat().st_mtime_ns for name, path in adapters.items()}

    monkeypatch.setattr(defend, "measure_utility", measure)
    messages.clear()
    page = run_compare(tmp_path / "defend", plan, progress=False, log=messages.append)
    assert {name: path.stat().st_mtime_ns for name, path in adapters.items()} == written  # not trained again
    assert not any("mosa align --preset" in m for m in messages)
    assert sum("nothing to do" in m for m in messages) == len(DEFENCES)  # every evaluation was complete

    found = json.loads((tmp_path / "defend" / "defences.json").read_text())
    assert list(found) == list(DEFENCES)
    for name in DEFENCES:
        assert list(found[name]["asr"]) == list(ATTACKS)
        assert all(attacked == 4 for _, attacked, _ in found[name]["asr"].values())
        assert found[name]["utility"][1] == 6 and found[name]["over_refusal"][1] == 6
        assert (found[name]["steps"] == 2) == (name in TRAINED) and found[name]["degenerate"] == (name == "A2D-style")
    ended = found["eos-monitor"]
    assert all(successes == 0 for successes, _, _ in ended["asr"].values()) and ended["asr"]["none"][2] == 4  # 4 empty
    assert ended["utility"] == [0, 6] and ended["over_refusal"] == [6, 6]
    # The sampler defence reached lm-eval's model: its utility records name it.
    settings = json.loads((tmp_path / "defend" / "utility" / "eos-monitor" / "tasks" / "utility" / "settings.json").read_text())
    assert settings["model_args"]["defences"] == SAMPLER["eos-monitor"]
    # The evaluation's records name the sampler defence too.
    records = (tmp_path / "defend" / "eval" / "annealed-remasking").rglob("*.jsonl")
    assert any("annealed-remasking" in path.read_text() for path in records)

    # Another alignment setting for the same directory is refused, before anything is trained.
    with pytest.raises(MosaError, match="initial-alignment was trained with other settings \\(max_steps 2 -> 3\\)"):
        run_compare(tmp_path / "defend", plan.with_settings(["align.max_steps=3"]), progress=False, log=messages.append)

    rows = list(csv.DictReader((tmp_path / "defend" / "defences.csv").open()))
    assert len(rows) == len(DEFENCES) * (len(ATTACKS) + 2)
    prefill = next(row for row in rows if row["defence"] == "MOSA" and row["measure"] == "asr prefill@0")
    assert int(prefill["of"]) == 4 and int(prefill["count"]) == found["MOSA"]["asr"]["prefill@0"][0]
    table = (tmp_path / "defend" / "defences.md").read_text()
    assert (
        "| A2D-style (DEGENERATE) | alignment (mosa align) |" in table and "| eos-monitor | sampler, on the organism |" in table
    )
    assert "2 steps, " in table and table.count("\n") == len(DEFENCES) + 2
    document = page.read_text()
    assert document.count("data:image/png;base64,") == 1 and "Small-model results" in document
    rebuild = f"mosa defend compare --quick --output {tmp_path / 'defend'} --set eval_prompts=4 --set utility_items=6 --set align.max_steps=2"
    assert rebuild in document
    assert "need an attacker" not in document and "needs an attacker" in document
    assert (tmp_path / "defend" / "defences.png").stat().st_size > 10_000


def test_bad_settings_are_one_line(tmp_path, capsys):
    with pytest.raises(MosaError, match="unknown setting; known: eval_prompts, utility_items"):
        DefendPlan.full().with_settings(["prompts=3"])
    with pytest.raises(MosaError, match="whole number"):
        DefendPlan.full().with_settings(["eval_prompts=0"])
    assert DefendPlan.full().with_settings(["align.epochs=2"]).align == {"epochs": 2}
    assert main(["defend", "compare", "--output", str(tmp_path / "x"), "--set", "limit"]) == 2
    assert "must look like KEY=VALUE" in capsys.readouterr().err
    assert main(["defend"]) == 2
    assert "mosa defend needs an action: compare" in capsys.readouterr().err
