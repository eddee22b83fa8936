"""What the three analyses share: sampler options, prompt sources, judges, progress and records.

Every analysis takes an options dataclass whose defaults fit a real dLLM (LLaDA-8B-Instruct:
256-token responses) and whose `for_organism()` fits the model organism (32-token responses); it
returns a JSON-able dict that names the model, the sampler settings, the prompts and the judges, so
that a result can be read, and rerun, without the code.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from mosa.attacks import Target, TargetResponse, TestCase
from mosa.data import Example, PromptSet, resolve_prompts
from mosa.errors import MosaError
from mosa.judges import ERROR, JUDGES, Verdict, judge_recording_errors, make_judge
from mosa.models import DiffusionLM
from mosa.paths import write_atomically
from mosa.progress import note, progress_bar
from mosa.sampling import SamplerConfig

# The organism's prompt sources (its plug-in's, mosa.data.prompts): its held-out harmful prompts (never
# trained on) and its utility questions (benign).
ORGANISM_HELD_OUT = "organism-held-out"
ORGANISM_UTILITY = "organism-utility"


@dataclass
class CommonOptions:
    """Sampler settings (the others take the reference's defaults) and the size of a run.
    One token per step (steps = gen_length) by default, as in LLaDA's evaluations."""

    gen_length: int = 256
    steps: int | None = None  # None: gen_length, one token per step
    temperature: float = 0.0
    remasking: str = "low_confidence"
    seed: int = 0  # the sampler's noise (temperature > 0) and the analysis's own draws
    batch_size: int = 16  # prompts sampled together
    limit: int | None = 100  # prompts per prompt set; None for all
    organism: bool = False  # the model is the model organism: results are labelled small-model results

    def sampler(self, lm: DiffusionLM, block_length: int) -> SamplerConfig:
        config = lm.sampler_config(
            gen_length=self.gen_length,
            steps=self.denoising_steps,
            block_length=block_length,
            temperature=self.temperature,
            remasking=self.remasking,
            seed=self.seed,
        )
        config.validate()
        return config

    @property
    def denoising_steps(self) -> int:
        return self.gen_length if self.steps is None else self.steps

    def check_common(self, block_lengths: list[int]) -> None:
        """Refuse bad settings in one line each, before a model is loaded."""
        for block_length in block_lengths:
            SamplerConfig(
                gen_length=self.gen_length,
                steps=self.denoising_steps,
                block_length=block_length,
                temperature=self.temperature,
                remasking=self.remasking,
            ).validate(require_ids=False)
        require_int("batch_size", self.batch_size, minimum=1)
        require_int("seed", self.seed, minimum=0)
        if self.limit is not None:
            require_int("limit", self.limit, minimum=1)


def require_int(name: str, value, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MosaError(f"{name}={value!r} must be an integer >= {minimum}")
    return value


def require_positions(name: str, positions, gen_length: int, room: int = 1) -> list[int]:
    """A non-empty list of distinct response positions, each leaving `room` tokens before gen_length."""
    if not isinstance(positions, list) or not positions:
        raise MosaError(f"{name}={positions!r} must be a non-empty list of response positions")
    for position in positions:
        require_int(name, position, minimum=0)
        if position + room > gen_length:
            raise MosaError(
                f"{name}: position {position} is beyond the response (gen_length={gen_length}); "
                f"use positions below {gen_length - room + 1} or raise gen_length"
            )
    if len(set(positions)) != len(positions):
        raise MosaError(f"{name}={positions} repeats a position")
    return positions


def require_judge(name: str, spec) -> None:
    """A registered judge's name, or a mapping {"name": ..., options}; the options are checked when it is built."""
    judge_name = spec.get("name") if isinstance(spec, dict) else spec
    if not isinstance(judge_name, str):
        raise MosaError(f"{name}={spec!r} must be a judge name ({', '.join(JUDGES.names())}) or a mapping with a name")
    JUDGES.get(judge_name)


def load_prompts(spec: str, limit: int | None, model: str | Path | None = None) -> PromptSet:
    """The first `limit` prompts of a prompt spec (mosa.data.resolve_prompts: `advbench`,
    `advbench+harmbench:eval`, ...). A model's own prompt sources (`organism-held-out`) are those of
    `model`, the model analysed."""
    return resolve_prompts(spec, model=model, limit=limit)


def with_backend(spec: str | dict | None, backend: str | None) -> str | dict | None:
    """A judge named by `spec`, with the LLM backend attached when it is a judge that takes one
    (a rubric judge); any other spec is returned as it is."""
    if backend is None or not isinstance(spec, str) or "backend" not in inspect.signature(JUDGES.get(spec)).parameters:
        return spec
    return {"name": spec, "backend": backend}


def build_judge(spec):
    judge = make_judge(spec)
    return judge, {"name": judge.name, "version": judge.version}


def judge_responses(judge, cases: list[TestCase], responses: list[str], analysis: str) -> list[Verdict]:
    """The judge's verdicts on the responses to `cases`, against their behaviours. A response whose
    request the judge's server rejects alone (longer than the judge model's context, say) gets an
    ERROR verdict, undecided and so never a success, said in one line; the analysis goes on."""
    verdicts = judge_recording_errors(judge, [case.behaviour for case in cases], responses)
    for case, verdict in zip(cases, verdicts):
        if verdict.label == ERROR:
            note(f"{analysis}: judge {judge.name}: {case.prompt_id}: {verdict.error}")
    return verdicts


def respond(target: Target, cases: list[TestCase], progress: bool, description: str) -> list[TargetResponse]:
    """Sample every case, a batch at a time, with a progress bar."""
    responses: list[TargetResponse] = []
    starts = range(0, len(cases), target.batch_size)
    for start in progress_bar(starts, desc=description, unit="batch", disable=not progress, leave=False):
        responses += target.respond(cases[start : start + target.batch_size])
    return responses


def model_record(lm: DiffusionLM, name: str | None, organism: bool) -> dict:
    return {
        "name": name or type(lm.module).__name__,
        "family": lm.family,
        "parameters": sum(parameter.numel() for parameter in lm.module.parameters()),
        "organism": organism,
    }


def sampler_record(config: SamplerConfig) -> dict:
    return dataclasses.asdict(config)


def prompt_record(prompts: PromptSet | list[Example]) -> dict:
    """How the prompts were resolved and each one's id, text hash and text (PromptSet.record); a
    plain list of examples has no spec."""
    prompt_set = prompts if isinstance(prompts, PromptSet) else PromptSet(spec=None, examples=tuple(prompts))
    return prompt_set.record(texts=True)


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    write_atomically(path, json.dumps(result, indent=1) + "\n")
    return path
