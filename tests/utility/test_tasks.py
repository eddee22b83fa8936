"""The offline lm-eval tasks: the same definitions as lm-eval's own, the files' sizes, gold answers
scored 1 and wrong ones 0 through lm-eval's pipeline, and HumanEval's execution in a subprocess."""

import os
from pathlib import Path

import lm_eval
import pytest
from lm_eval.tasks import TaskManager
from lm_eval.tasks._yaml_loader import load_yaml

from mosa.utility.execution import pass_at_k, run_program
from mosa.utility.run import TASKS_DIR
from mosa.utility.tasks import utils
from tests.utility import scripted_lms  # noqa: F401  registers the test models

UPSTREAM = Path(lm_eval.__file__).parent / "tasks"
# mosa's task -> lm-eval's, read as lm-eval reads them (includes merged, !function as file paths)
COUNTERPARTS = {
    "mosa_gsm8k": "gsm8k/gsm8k.yaml",
    "mosa_mmlu": "mmlu/default/_default_template_yaml",
    "mosa_mmlu_generative": "mmlu/generative/_default_template_yaml",
    "mosa_humaneval": "humaneval/humaneval.yaml",
    "mosa_humaneval_instruct": "humaneval/humaneval_instruct.yaml",
}
# What differs on purpose: where the data comes from, the task's name, the few-shot split (the
# offline files have test splits only), and MMLU's description and sampler (one task, every subject).
DATA_KEYS = {
    "task",
    "dataset_path",
    "dataset_name",
    "custom_dataset",
    "fewshot_split",
    "fewshot_config",
    "description",
    "tag",
    "training_split",
}


def _named_functions(value):
    """!function values (file paths here) by their function name, so that both sides compare."""
    if isinstance(value, dict):
        return {key: _named_functions(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_named_functions(item) for item in value]
    if isinstance(value, str) and "/utils." in value:
        return value.rpartition("/")[2]
    return value


@pytest.mark.parametrize("ours, theirs", COUNTERPARTS.items())
def test_offline_tasks_are_lm_evals_tasks_on_other_files(ours, theirs):
    mine = _named_functions(load_yaml(TASKS_DIR / f"{ours}.yaml", resolve_func=False))
    upstream = _named_functions(load_yaml(UPSTREAM / theirs, resolve_func=False))
    keys = (set(mine) | set(upstream)) - DATA_KEYS
    assert {key: mine.get(key) for key in keys} == {key: upstream.get(key) for key in keys}


def test_mmlu_description_is_lm_evals_per_subject_description():
    """lm-eval has one task per subject, each with its description; mosa's one task renders the same text."""
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    (task,) = manager.load(["mosa_mmlu"])["tasks"].values()
    subjects = {doc["subject"]: doc for doc in task.test_docs()}
    assert len(subjects) == 57
    for path in (UPSTREAM / "mmlu" / "default").glob("mmlu_*.yaml"):
        upstream = load_yaml(path, resolve_func=False, recursive=False)
        assert task.resolve_field(subjects[upstream["dataset_name"]], task.config.description) == upstream["description"]


def test_offline_sizes():
    assert len(utils.gsm8k()["test"]) == 100  # of GSM8K's 1,319 test problems
    assert len(utils.mmlu()["test"]) == 14042  # the whole test set
    assert len(utils.humaneval()["test"]) == 164  # the whole set
    assert len(utils.organism_utility(model="organism")["test"]) == 186


def test_mmlu_shots_are_the_first_other_questions_of_the_subject():
    docs = [{"subject": s, "question": q} for s, q in [("a", "1"), ("b", "2"), ("a", "3"), ("a", "4"), ("a", "5")]]
    sampler = utils.SameSubjectFirstN(docs)
    assert [doc["question"] for doc in sampler.sample(2, eval_doc=docs[2])] == ["1", "4"]
    with pytest.raises(ValueError, match="fewer than 4 shots"):
        sampler.sample(4, eval_doc=docs[0])


ALL_TASKS = ["mosa_gsm8k", "mosa_mmlu", "mosa_mmlu_generative", "mosa_humaneval", "mosa_organism_utility"]
METRICS = {
    "mosa_gsm8k": ["exact_match,strict-match", "exact_match,flexible-extract"],
    "mosa_mmlu": ["acc,none"],
    "mosa_mmlu_generative": ["exact_match,get_response"],
    "mosa_humaneval": ["pass@1,create_test"],
    "mosa_organism_utility": ["exact_match,strip"],
}


@pytest.mark.parametrize("wrong, expected", [(False, 1.0), (True, 0.0)])
def test_gold_answers_score_one_and_wrong_answers_zero(wrong, expected):
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"model": "organism"})
    results = lm_eval.simple_evaluate(
        model="mosa-test-oracle",
        model_args={"wrong": wrong},
        tasks=ALL_TASKS,
        limit=3,
        task_manager=manager,
        confirm_run_unsafe_code=True,
    )
    scores = {task: [results["results"][task][metric] for metric in METRICS[task]] for task in ALL_TASKS}
    assert scores == {task: [expected] * len(METRICS[task]) for task in ALL_TASKS}
    assert results["results"]["mosa_gsm8k"]["sample_len"] == 3


def test_humaneval_is_refused_without_lm_evals_switch():
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    with pytest.raises(ValueError, match="confirm_run_unsafe_code"):
        lm_eval.simple_evaluate(model="mosa-test-oracle", tasks=["mosa_humaneval"], limit=1, task_manager=manager)


def test_programs_run_in_a_subprocess_with_a_time_limit(monkeypatch):
    assert run_program("assert 1 + 1 == 2\n").passed
    failed = run_program("def f():\n    return 1\nassert f() == 2, 'wrong'\n")
    assert not failed.passed and failed.result == "AssertionError: wrong"
    # An endless loop is killed at the time limit, with what it started.
    assert (
        run_program(
            "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass'])\nwhile True:\n    pass\n",
            timeout=1.0,
        ).result
        == "timed out"
    )
    # Not in this process: exiting, or changing the interpreter, leaves the evaluator as it was.
    assert run_program("import os\nos._exit(0)\n").passed
    assert run_program("import builtins\nbuiltins.len = None\n").passed and len("ok") == 2
    # Nothing of the evaluator's environment reaches the program.
    monkeypatch.setenv("MOSA_TEST_API_KEY", "secret")
    assert run_program("import os\nassert 'MOSA_TEST_API_KEY' not in os.environ\n").passed
    assert os.environ["MOSA_TEST_API_KEY"] == "secret"


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
