"""`mosa eval` end to end on a tiny random dLLM: records, tables, resume, refusals."""

import json
import shutil

import pytest

from mosa.attacks import Target, make_attack
from mosa.data import load_dataset
from mosa.eval import runner
from tests.eval.conftest import GOALS, mosa_eval, read_jsonl, small_settings, write_config

STAGE_FILES = ("config.json", "cases.jsonl", "completions.jsonl", "verdicts.jsonl", "records.jsonl", "asr.md", "asr.csv")
CASES_PER_BEHAVIOUR = 4  # none, prefill at 0 and at 8, anchor


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, model_dir, behaviours_csv):
    """One finished run, shared; tests that change it work on a copy."""
    directory = tmp_path_factory.mktemp("finished")
    config = write_config(directory, small_settings(model_dir, behaviours_csv))
    assert mosa_eval("--config", config, "--output", directory / "run") == 0
    return directory / "run"


def copy_of(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_records_carry_the_case_the_sampler_the_response_its_decoding_order_and_every_verdict(finished_run, settings):
    records = read_jsonl(finished_run / "records.jsonl")
    assert len(records) == len(GOALS) * CASES_PER_BEHAVIOUR
    keys = [(r["benchmark"], r["attack"], r["prompt_id"]) for r in records]
    assert len(set(keys)) == len(keys)
    by_attack = {}
    for record in records:
        by_attack.setdefault(record["attack"], []).append(record)
        assert record["behaviour"] in GOALS and record["benchmark"] == "tiny"
        assert record["sampler"]["gen_length"] == 16 and record["sampler"]["mask_id"] is not None
        assert len(record["response_ids"]) == len(record["commit_step"]) == 16
        assert record["order"]["decoded"] + record["order"]["attack_written"] + record["order"]["undecoded"] == 16
        assert [(v["judge"], v["judge_version"]) for v in record["verdicts"]] == [
            ("keyword-long", "keyword-long-d2cdcb67c0"),
            ("keyword-gcg", "keyword-gcg-0b9bdeb372"),
        ]
    assert sorted(by_attack) == ["anchor", "none", "prefill"]
    prefilled = {(r["prompt_id"].split("@")[1], json.dumps(r["prefill"])) for r in by_attack["prefill"]}
    assert prefilled == {("0", '{"0": "sure here is"}'), ("8", '{"8": "sure here is"}')}
    anchored = by_attack["anchor"][0]
    assert anchored["interventions"] == {"2": {"0": "step one"}} and anchored["payload"]["step"] == 2
    assert anchored["order"]["attack_written"] == 2  # "step one" is written by the attack, not decoded
    assert json.loads((finished_run / "config.json").read_text())["attacks"][0] == {"name": "none"}
    table = (finished_run / "asr.md").read_text()
    for attack in ("none", "prefill@0", "prefill@8", "anchor"):
        assert f"| tiny | {attack} | keyword-long | 12 |" in table


def test_a_finished_run_is_not_redone(finished_run, tmp_path, monkeypatch, capsys):
    run = copy_of(finished_run, tmp_path)
    before = {name: (run / name).stat().st_mtime_ns for name in STAGE_FILES}

    def no_model(*args):
        raise AssertionError("a finished run loaded the model")

    monkeypatch.setattr(runner, "load_target_model", no_model)
    assert mosa_eval("--output", run) == 0  # resumed with the run's own config.json
    assert {name: (run / name).stat().st_mtime_ns for name in STAGE_FILES} == before
    assert "is complete; nothing to do" in capsys.readouterr().out


def test_a_torn_last_line_is_dropped_and_its_response_sampled_again(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    completions = (run / "completions.jsonl").read_bytes()
    last_line = completions.rstrip(b"\n").rfind(b"\n") + 1
    (run / "completions.jsonl").write_bytes(completions[: last_line + 40])  # killed in the middle of the last line
    for name in ("verdicts.jsonl", "records.jsonl", "asr.md", "asr.csv"):
        (run / name).unlink()
    assert mosa_eval("--output", run) == 0
    assert "completions.jsonl: dropped a torn last line of 40 bytes" in capsys.readouterr().out
    assert (run / "completions.jsonl").read_bytes() == completions
    assert read_jsonl(run / "records.jsonl") == read_jsonl(finished_run / "records.jsonl")


def test_a_line_that_mosa_never_writes_is_reported(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    lines = (run / "verdicts.jsonl").read_text().splitlines(keepends=True)
    (run / "verdicts.jsonl").write_text("".join(lines[:3] + ["{not json\n"] + lines[3:]))
    assert mosa_eval("--output", run) == 2
    assert "verdicts.jsonl:4 is not a JSON record" in capsys.readouterr().err


def test_a_changed_config_is_refused_naming_the_settings_and_the_fix(finished_run, tmp_path, settings, capsys):
    run = copy_of(finished_run, tmp_path)
    config = write_config(tmp_path, {**settings, "limit": 5, "sampler": {**settings["sampler"], "steps": 8}})
    assert mosa_eval("--config", config, "--output", run) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert "limit: None -> 5" in error and "sampler.steps: 16 -> 8" in error
    assert "use a new --output directory, or restore those settings" in error


def test_tables_of_several_runs_have_a_row_per_model(finished_run, tmp_path, capsys):
    other = copy_of(finished_run, tmp_path)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model": "another-model"}))
    assert main_tables(finished_run, other, "--output", tmp_path / "both") == 0
    table = (tmp_path / "both" / "asr.md").read_text()
    assert "| model | benchmark |" in table and "| another-model | tiny | none | keyword-gcg |" in table
    assert main_tables(finished_run, other) == 2
    assert "give --output DIR" in capsys.readouterr().err
    # the paper's layout needs its two judges: refused in one line, before anything is written
    assert main_tables(finished_run, other, "--output", tmp_path / "paper", "--layout", "paper") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "the paper's layout needs the judges harm-rubric and strongreject-strict" in error
    assert not (tmp_path / "paper").exists()


def test_tables_show_the_utility_of_each_model_beside_its_asr(finished_run, tmp_path, capsys):
    """`--utility` matches each utility run to the ASR runs' models by model and adapter, however either
    names them ("organism" or its checkpoint directory, a relative adapter path), whatever the order."""
    import tests.utility.scripted_lms  # noqa: F401  registers mosa-test-oracle, which answers from the items
    from mosa.profiles import model_path
    from mosa.utility.run import load_config, run_utility

    adapter = tmp_path / "align" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")  # the oracle loads no model, and no adapter
    runs = {}
    for name, model, adapter_of_run in (
        ("base", model_path("organism"), None),
        ("aligned", "organism", str(adapter)),
        ("other", "another-model", None),
    ):
        runs[name] = copy_of(finished_run, tmp_path / name)
        config = json.loads((runs[name] / "config.json").read_text())
        (runs[name] / "config.json").write_text(json.dumps({**config, "model": model, "adapter": adapter_of_run}))
    oracle = ["lm_eval_model=mosa-test-oracle", "apply_chat_template=false", "limit=4"]
    run_utility(load_config("organism", oracle), tmp_path / "utility-base", progress=False)
    wrong = load_config("organism", [*oracle, "model_args.wrong=true"], adapter=str(adapter / ".." / "adapter"))
    run_utility(wrong, tmp_path / "utility-aligned", progress=False)

    found = [tmp_path / "utility-aligned", tmp_path / "utility-base"]
    assert main_tables(*runs.values(), "--output", tmp_path / "t", "--utility", *found) == 0
    shown = capsys.readouterr().out
    table = "| model | utility |\n|---|---:|\n"
    table += f"| {model_path('organism')} | 100.0 |\n| organism + {adapter} | 0.0 |\n| another-model | - |\n"
    assert shown.index("# Attack success rates") < shown.index("# Utility (lm-evaluation-harness)\n\n" + table)
    assert (tmp_path / "t" / "utility.md").read_text().startswith(table)
    assert "utility.csv" in shown.splitlines()[-1]

    # A utility run of a model no ASR run measured, or two of one model: one line, nothing written.
    assert main_tables(runs["other"], "--output", tmp_path / "x", "--utility", tmp_path / "utility-base") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "utility-base measured " in error and "which none of the ASR runs did" in error
    assert main_tables(runs["base"], "--output", tmp_path / "x", "--utility", *found, found[1]) == 2
    assert "measured the same model" in capsys.readouterr().err and not (tmp_path / "x").exists()


def main_tables(*args) -> int:
    from mosa.cli import main

    return main(["eval", "tables", *map(str, args)])


def test_an_adapter_is_merged_into_the_model(settings, model_dir, behaviours_csv, tmp_path):
    from peft import LoraConfig, get_peft_model

    from mosa.models import load_model

    lm = load_model(model_dir)
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # random, not a no-op
    adapted = get_peft_model(lm.module, lora)
    adapted.save_pretrained(tmp_path / "adapter")
    config = write_config(tmp_path, {**settings, "attacks": ["none"], "judges": ["keyword-gcg"]})
    assert mosa_eval("--config", config, "--output", tmp_path / "run", "--adapter", tmp_path / "adapter") == 0

    records = read_jsonl(tmp_path / "run" / "records.jsonl")
    assert {record["adapter"] for record in records} == {str(tmp_path / "adapter")}
    behaviours = load_dataset(str(behaviours_csv))
    base = Target(load_model(model_dir), lm.sampler_config(**settings["sampler"]), batch_size=4)
    base_texts = [r.text for r in base.respond(make_attack("none").cases(behaviours, base))]
    lm.module = adapted.merge_and_unload()
    merged = Target(lm, lm.sampler_config(**settings["sampler"]), batch_size=4)
    merged_texts = [r.text for r in merged.respond(make_attack("none").cases(behaviours, merged))]
    assert [record["response"] for record in records] == merged_texts != base_texts


@pytest.mark.parametrize(
    "content, message",
    [
        ("goal,target\n", "has a header (goal, target) but no rows of data"),
        pytest.param(
            "goal,target\n,sure\n  ,sure\n",
            "no rows left with a non-empty prompt (2 read)",
            marks=pytest.mark.filterwarnings("ignore:.*empty prompt"),
        ),  # each dropped row is also warned about
    ],
)
def test_a_benchmark_without_usable_rows_stops_with_a_message(settings, tmp_path, capsys, content, message):
    empty = tmp_path / "empty.csv"
    empty.write_text(content)
    config = write_config(tmp_path, {**settings, "benchmarks": [str(empty)]})
    assert mosa_eval("--config", config, "--output", tmp_path / "run") == 2
    error = capsys.readouterr().err
    assert message in error and error.count("mosa: error") == 1
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_an_expensive_attacks_cases_are_saved_before_sampling_and_never_built_twice(settings, tmp_path, monkeypatch):
    from mosa.attacks.gcg import GcgAttack

    gcg = {
        "name": "gcg",
        "target": "sure here is",
        "suffix_length": 3,
        "iterations": 2,
        "top_k": 8,
        "candidates": 8,
        "init": "the",
    }
    config = write_config(tmp_path, {**settings, "attacks": [gcg], "judges": ["keyword-gcg"], "limit": 3})
    run = tmp_path / "run"
    assert mosa_eval("--config", config, "--output", run) == 0
    records = read_jsonl(run / "records.jsonl")
    assert [len(record["payload"]["loss_trajectory"]) for record in records] == [3, 3, 3]  # before, and after each iteration
    assert all(record["messages"][0]["content"].endswith(record["payload"]["suffix"]) for record in records)

    for name in ("completions.jsonl", "verdicts.jsonl", "records.jsonl", "asr.md", "asr.csv"):
        (run / name).unlink()  # as if killed after the attack had built its cases

    def rebuilt(*args):
        raise AssertionError("the attack ran again although its cases were saved")

    monkeypatch.setattr(GcgAttack, "cases", rebuilt)
    assert mosa_eval("--output", run) == 0
    assert read_jsonl(run / "records.jsonl") == records
