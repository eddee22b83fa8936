"""What the offline tasks' YAML files name with `!function utils.NAME`: datasets read from the files
`mosa data` provides ($MOSA_DATA_DIR, or the cache `mosa data pull` fills), in the fields lm-eval's
own gsm8k, mmlu and humaneval tasks read from the hub; MMLU's few-shot sampler; HumanEval's
predictions and its pass@k, each program run in a subprocess (mosa.utility.execution); and the
organism's utility items.

lm-eval calls a task's `custom_dataset` with the run's metadata (the model's arguments among them,
so `model` names the organism whose items to load) and expects a mapping of split name to Dataset.
The offline files hold test splits only, so few-shot examples come from the test split too, never
the item being asked (docs/utility.md says what that changes).
"""

from __future__ import annotations

from collections import defaultdict

import datasets
from lm_eval.api.samplers import ContextSampler

from mosa.data import load_dataset, resolve_prompts
from mosa.data.loaders import MMLU_LETTERS
from mosa.utility.execution import pass_at_k as estimate_pass_at_k
from mosa.utility.execution import run_programs


def gsm8k(**metadata) -> datasets.DatasetDict:
    """GSM8K as openai/gsm8k's `main` config: question, and answer (the worked solution ending in
    "#### N"). A file with final answers only gets "#### N" as its solution."""
    rows = [
        {"question": example.prompt, "answer": example.meta.get("solution") or f"#### {example.target}"}
        for example in load_dataset("gsm8k")
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def mmlu(**metadata) -> datasets.DatasetDict:
    """MMLU as cais/mmlu's `all` config: question, subject (abstract_algebra, ...), choices, answer (0-3)."""
    rows = [
        {
            "question": example.meta["question"],
            "subject": (example.category or "").replace(" ", "_"),
            "choices": example.meta["choices"],
            "answer": MMLU_LETTERS.index(example.target),
        }
        for example in load_dataset("mmlu")
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


class SameSubjectFirstN(ContextSampler):
    """lm-eval's mmlu takes the first n dev questions of the question's own subject (one task per
    subject, sampler first_n); here one task holds every subject, so this takes the first n questions
    of the question's subject, the question itself left out."""

    def sample(self, n: int, eval_doc=None, df=None, **kwargs):
        if not hasattr(self, "_by_subject"):
            self._by_subject = defaultdict(list)
            for doc in self.fewshot_docs():
                self._by_subject[doc["subject"]].append(doc)
        pool = [doc for doc in self._by_subject[eval_doc["subject"]] if doc != eval_doc]
        if len(pool) < n:
            raise ValueError(f"MMLU subject {eval_doc['subject']} has {len(pool)} other questions, fewer than {n} shots")
        return pool[:n]


def humaneval(**metadata) -> datasets.DatasetDict:
    """HumanEval as openai/openai_humaneval: task_id, prompt, canonical_solution, test, entry_point."""
    rows = [
        {
            "task_id": example.id,
            "prompt": example.meta["prompt"],
            "canonical_solution": example.target or "",
            "test": example.meta["test"],
            "entry_point": example.meta["entry_point"],
        }
        for example in load_dataset("humaneval")
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """The program each completion makes: the problem's prompt (the signature and docstring), then the completion."""
    return [[doc["prompt"] + response for response in responses] for responses, doc in zip(resps, docs)]


def build_predictions_instruct(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """As build_predictions, for a chat answer that continued lm-eval's ```python prefix: cut at its closing fence."""
    return [[doc["prompt"] + response.split("```")[0] for response in responses] for responses, doc in zip(resps, docs)]


def pass_at_k(references: list[str], predictions: list[list[str]], k: list[int] | int = 1) -> dict[str, float]:
    """pass@k of one problem: each candidate program, followed by the problem's tests (`references`,
    "<test code>\\ncheck(<entry point>)"), run in its own subprocess with a time limit."""
    ks = [k] if isinstance(k, int) else list(k)
    (test,), (candidates,) = references, predictions
    outcomes = run_programs([f"{candidate}\n{test}\n" for candidate in candidates])
    correct = sum(outcome.passed for outcome in outcomes)
    return {f"pass@{each}": estimate_pass_at_k(len(candidates), correct, each) for each in ks if each <= len(candidates)}


def organism_utility(model: str = "organism", **metadata) -> datasets.DatasetDict:
    """The organism's utility items (the "organism-utility" prompt source of the organism `model`
    names: the shipped one, or a build directory): prompt and answer."""
    rows = [{"prompt": example.prompt, "answer": example.target} for example in resolve_prompts("organism-utility", model=model)]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
