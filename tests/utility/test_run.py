"""`mosa utility`: checks before any model loads, the organism's utility end to end through lm-eval
(equal to its behaviour card's figure), resuming from lm-eval's cache, refusing a changed config, tables."""

import importlib.util
import json

import pytest
import torch

from mosa.cli import main
from mosa.errors import MosaError
from mosa.utility.run import load_config, read_run, run_utility, utility_markdown
from tests.utility.scripted_lms import SamplerLM

# The lm-eval model `mosa` (mosa.utility.model) once it is part of the package; else only the test
# model that samples as it does.
MODELS = ["mosa-test-sampler"] + (["mosa"] if importlib.util.find_spec("mosa.utility.model") else [])


def organism_config(lm_eval_model, *extra):
    overrides = [f"lm_eval_model={lm_eval_model}"] if lm_eval_model != "mosa" else []
    if lm_eval_model != "mosa":  # the test model renders the chat itself
        overrides.append("apply_chat_template=false")
    return load_config("organism", [*overrides, *extra])


def card_utility(limit):
    """The organism's utility as its behaviour card measures it (mosa.organism.card.measure_card)."""
    from mosa.models import load_model
    from mosa.organism.card import sample_responses
    from mosa.organism.corpus import utility_items
    from mosa.profiles import model_path

    lm = load_model(model_path("organism"))
    items = utility_items(0)[:limit]
    with torch.no_grad():
        answers = sample_responses(lm, [item.prompt for item in items], gen_length=32)
    return sum(answer == item.answer for answer, item in zip(answers, items)) / len(items)


@pytest.mark.parametrize("lm_eval_model", MODELS)
def test_organism_utility_through_lm_eval_equals_its_card(tmp_path, lm_eval_model):
    config = organism_config(lm_eval_model, "limit=48")
    (row,) = run_utility(config, tmp_path / "run", progress=False)
    value, _, items = row["cells"]["utility"]
    assert items == 48
    assert value == card_utility(48)
    files = sorted(path.name for path in (tmp_path / "run" / "tasks" / "utility").rglob("*"))
    assert any(name.startswith("results_") for name in files) and any(
        name.startswith("samples_mosa_organism_utility") for name in files
    )
    assert "| organism | " in (tmp_path / "run" / "utility.md").read_text()


def test_resume_answers_from_lm_evals_cache_and_skips_finished_tasks(tmp_path):
    run = tmp_path / "run"
    config = organism_config("mosa-test-sampler", "limit=8")
    first = run_utility(config, run, progress=False)
    calls, built = SamplerLM.calls, SamplerLM.built
    # Killed after every request was answered, before the task's result was written:
    (run / "tasks" / "utility" / "result.json").unlink()
    assert run_utility(config, run, progress=False) == first
    assert SamplerLM.calls == calls  # every answer came from lm-eval's cache
    assert run_utility(config, run, progress=False) == first
    assert SamplerLM.built == built + 1  # a finished task is not run again: no model is built


def test_changed_settings_or_model_are_refused(tmp_path):
    run = tmp_path / "run"
    run_utility(organism_config("mosa-test-sampler", "limit=4"), run, progress=False)
    with pytest.raises(MosaError, match=r"started with other settings \(model_args.gen_length: 32 -> 16"):
        run_utility(
            organism_config("mosa-test-sampler", "limit=4", "tasks.utility.model_args.gen_length=16"), run, progress=False
        )
    with pytest.raises(MosaError, match="holds the utility of another model"):
        run_utility(organism_config("mosa-test-sampler", "limit=4", "model=other"), run, progress=False)
    eval_run = tmp_path / "eval-run"  # another command's run directory, with a config.json of its own
    eval_run.mkdir()
    (eval_run / "config.json").write_text(json.dumps({"model": "organism", "benchmarks": ["advbench"]}))
    with pytest.raises(MosaError, match="holds another command's run, not a mosa utility run; use a new --output"):
        run_utility(organism_config("mosa-test-sampler", "limit=4"), eval_run, progress=False)


def test_bad_input_is_one_line_before_any_model_loads(tmp_path, capsys):
    cases = {
        ("--set", "limit=0"): "limit=0 must be a whole number >= 1",
        ("--set", "colour=red"): "unknown setting 'colour'",
        ("--set", "tasks.utility.task=mosa_no_such_task"): "no lm-eval task 'mosa_no_such_task'",
        ("--set", "tasks.utility.shots=3"): "tasks.utility: unknown settings shots",
        ("--adapter", str(tmp_path)): "is not a peft adapter directory",
        ("--set", "tasks.utility=null"): "every task was removed",
    }
    for arguments, message in cases.items():
        code = main(
            [
                "utility",
                "--config",
                "organism",
                "--output",
                str(tmp_path / "run"),
                "--set",
                "lm_eval_model=mosa-test-refuse",
                *arguments,
            ]
        )
        error = capsys.readouterr().err
        assert code == 2 and error.startswith("mosa: error: ") and message in error and error.count("\n") == 1, error


def test_code_executing_tasks_need_the_switch_before_any_model_loads(tmp_path):
    config = load_config("paper-llada8b", ["lm_eval_model=mosa-test-refuse", "tasks.gsm8k=null", "tasks.mmlu=null"])
    with pytest.raises(MosaError, match="executes the code the model writes.*--confirm-run-unsafe-code"):
        run_utility(config, tmp_path / "run", progress=False)


def test_tables_over_several_runs(tmp_path, capsys):
    for name in ("base", "mosa"):
        run_utility(organism_config("mosa-test-sampler", "limit=4", f"label={name}"), tmp_path / name, progress=False)
    assert main(["utility", "tables", str(tmp_path / "base"), str(tmp_path / "mosa"), "--output", str(tmp_path / "table")]) == 0
    shown = capsys.readouterr().out
    assert shown.splitlines()[:2] == ["| model | utility |", "|---|---:|"]
    assert [line.split(" | ")[0] for line in shown.splitlines()[2:4]] == ["| base", "| mosa"]
    assert (tmp_path / "table" / "utility.md").read_text().strip() == shown.strip()
    assert utility_markdown([read_run(tmp_path / "base")]) in (tmp_path / "base" / "utility.md").read_text()
    assert json.loads((tmp_path / "base" / "config.json").read_text())["label"] == "base"
