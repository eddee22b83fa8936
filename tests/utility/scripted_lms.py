"""lm-eval models for the utility tests: real lm_eval.api.model.LM subclasses, registered by name, so
that tasks and `mosa utility` run through lm-eval's whole pipeline (prompts, filters, metrics, cache).

  mosa-test-oracle   answers every item of the offline tasks with its reference answer (or, with
                     wrong=True, with a wrong one): a task that scores its own gold answers 1 and
                     wrong ones 0 is scored as it should be
  mosa-test-sampler  mosa's exact sampler on a mosa model, the response decoded as the organism's
                     card decodes it: what the lm-eval model `mosa` does for generate_until
  mosa-test-refuse   fails if lm-eval ever builds it: for checks that must happen before a model loads
"""

from __future__ import annotations

from functools import cache

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from mosa.utility.tasks import utils


@cache
def reference_answers(model: str) -> tuple[dict, ...]:
    """Each item's prompt, as the tasks end their contexts with it (after any few-shot examples), to its answer."""
    gsm8k = {f"Question: {row['question']}\nAnswer:": row["answer"] for row in utils.gsm8k()["test"]}
    mmlu = {
        f"{row['question'].strip()}\n"
        + "".join(f"{letter}. {choice}\n" for letter, choice in zip("ABCD", row["choices"]))
        + "Answer:": "ABCD"[row["answer"]]
        for row in utils.mmlu()["test"]
    }
    humaneval = {row["prompt"]: row["canonical_solution"] for row in utils.humaneval()["test"]}
    organism = {row["prompt"]: row["answer"] for row in utils.organism_utility(model=model)["test"]}
    return gsm8k, mmlu, humaneval, organism


@register_model("mosa-test-oracle")
class OracleLM(LM):
    calls = 0

    def __init__(self, model: str = "organism", wrong: bool = False, **ignored):
        super().__init__()
        self.wrong = wrong
        self.gsm8k, self.mmlu, self.humaneval, self.organism = reference_answers(model)

    def generate_until(self, requests):
        OracleLM.calls += len(requests)
        answers = []
        for request in requests:
            context = request.args[0]
            answers.append(self.answer(context))
            self.cache_hook.add_partial("generate_until", request.args, answers[-1])
        return answers

    def answer(self, context: str) -> str:
        if context in self.humaneval:  # the prompt is the function's signature and docstring
            return "    return None\n" if self.wrong else self.humaneval[context]
        if context in self.organism:
            return "the answer is none ." if self.wrong else self.organism[context]
        for item, solution in self.gsm8k.items():
            if context.endswith(item):  # the worked solution, ending in "#### N"
                return " It is 123456.\n#### 123456" if self.wrong else " " + solution
        letter = next(letter for item, letter in self.mmlu.items() if context.endswith(item))
        return " " + ("ABCD"[("ABCD".index(letter) + 1) % 4] if self.wrong else letter)

    def loglikelihood(self, requests):
        answers = []
        for request in requests:
            context, continuation = request.args
            gold = self.answer(context).strip()
            answers.append((0.0 if continuation.strip() == gold else -5.0, False))
        return answers

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


@register_model("mosa-test-sampler")
class SamplerLM(LM):
    """Contexts are user prompts, rendered with the model's chat template here (lm-eval's own
    apply_chat_template is the `mosa` model's business), sampled with mosa's sampler."""

    built = 0
    calls = 0

    def __init__(self, model: str, gen_length: int, steps: int, block_length: int, batch_size: int = 64, **ignored):
        from mosa.models import load_model
        from mosa.profiles import model_path

        super().__init__()
        SamplerLM.built += 1
        self.lm = load_model(model_path(model))
        self.config = self.lm.sampler_config(gen_length=gen_length, steps=steps, block_length=block_length)
        self.batch_size = batch_size

    def generate_until(self, requests):
        SamplerLM.calls += len(requests)
        prompts = [request.args[0] for request in requests]
        with torch.no_grad():
            ids = self.lm.sample_response_ids(prompts, self.config, batch_size=self.batch_size)
        answers = [self.lm.decode_response(row) for row in ids]
        for request, answer in zip(requests, answers):
            self.cache_hook.add_partial("generate_until", request.args, answer)
        return answers

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


@register_model("mosa-test-refuse")
class RefuseLM(LM):
    def __init__(self, **arguments):
        raise AssertionError("a model was built although the run should have stopped before")
