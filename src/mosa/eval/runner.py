"""The evaluation pipeline, staged like HarmBench: test cases -> completions -> verdicts -> tables.

    config = load_config("organism")
    rows = run_eval(config, Path("runs/organism"))      # ASR rows; asr.md, asr.csv, records.jsonl on disk

Work is cut into units: `batch_size` behaviours of one benchmark under one attack. For each unit the
attack builds its test cases one behaviour at a time (stage 1, saved per behaviour, so that an
expensive attack such as GCG or TAP is never run twice for a behaviour; a multi-round attack also
saves its state after each round under rounds/), then the target answers them in batches of
`batch_size` cases (stage 2). A batch is fixed by the config (the unit's cases in order, cut every `batch_size`), so a
resumed run, or a run on several processes, samples every response in the batch an uninterrupted
single-process run would: a case's noise follows its prompt id, but with LLaDA checkpoints left
padding shifts positions and so the rounding of a response.
When every response exists, each judge rates the ones it has not rated yet (stage 3), and the
main process writes records.jsonl and the tables.

The target is the model, loaded in this process, or with `endpoint` the model a `mosa serve`
endpoint serves (mosa.attacks.served): each batch's cases are sent to it at once, and its answers
carry the token ids, commit steps and decoding order that in-process sampling records. Attacks that
need more than an endpoint offers (interventions, bans, log-probabilities) are refused before any work.

Benchmarks are prompt specs (mosa.data.resolve_prompts). Before anything is loaded or written, a
benchmark that shares prompts with the training prompts recorded beside the adapter (or a merged
checkpoint) under evaluation is refused, unless `allow_train_overlap`. The run directory's
inputs.json records the model's and the adapter's content fingerprints (or the endpoint's URL and
served model, and what the server says it serves: mosa serve's fingerprint of its model, adapter
and settings, read from the model card when the run first samples) and each benchmark's prompt set;
a rerun on other inputs is refused, as is one with another config, or one against a server whose
model changed.

Under `accelerate launch` process K takes units K, K + N, K + 2N, ... and every N-th response to judge,
and appends to its own stage files (mosa.eval.store). The model is loaded only when some unit of
this process lacks a test case or a response, so a finished run, or one whose judge endpoint was
down, resumes without loading it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from mosa.attacks import Attack, Target, TestCase, make_attack
from mosa.attacks.base import RoundStore, TargetBase, TargetResponse
from mosa.attacks.served import ServedTarget, served_changes
from mosa.data import Example, PromptSet, prompt_hash, resolve_prompts
from mosa.errors import MosaError
from mosa.eval.config import EvalConfig, attack_label, attack_options
from mosa.eval.store import STAGES, append_lines, check_config, lock, read_stage, repair, stage_file, stage_files
from mosa.eval.tables import AsrRow, asr_rows, completion_key, load_records, verdict_key, write_tables
from mosa.judges import ERROR, judge_recording_errors, make_judge
from mosa.models import DiffusionLM, check_prompts_before_loading
from mosa.paths import write_atomically
from mosa.profiles import model_path
from mosa.progress import progress_bar
from mosa.provenance import check_inputs, fingerprint_directory, fingerprint_model, read_inputs, write_inputs
from mosa.sampling import SamplerConfig

OUTPUTS = ("records.jsonl", "asr.md", "asr.csv")
INPUTS_FIX = "use a new --output directory, or restore the model, adapter and benchmark files it was run on"


@dataclass(frozen=True)
class Unit:
    number: int  # its place in the plan; with the case's index it orders records and fixes batches
    benchmark: str
    attack: str  # the attack's label
    attack_name: str  # its name in the registry
    behaviours: tuple[Example, ...]


@dataclass(frozen=True)
class Worker:
    """This process's share of the run: under accelerate launch one of `processes`, else the only one."""

    rank: int
    processes: int
    device: str
    progress: bool  # progress bars (the main process only)
    say: Callable[[str], None]  # log lines (the main process only)


def run_eval(
    config: EvalConfig, output: str | Path, *, progress: bool = True, log: Callable[[str], None] = print
) -> list[AsrRow]:
    """Run (or resume) the evaluation in `output`; returns the ASR rows (on the main process)."""
    from accelerate import PartialState

    output = Path(output)
    attacks = build_attacks(config)  # unknown names and bad options fail here, before anything is loaded or written
    judges = build_judges(config)
    benchmarks = load_benchmarks(config)
    units = plan_units(benchmarks, config)
    # under accelerate launch: this process's rank and device (none needed to reach an endpoint)
    process = PartialState(cpu=config.device == "cpu" or config.endpoint is not None)
    main = process.is_main_process
    say = log if main else (lambda message: None)
    check_train_overlap(config, benchmarks, say)
    if main:
        output.mkdir(parents=True, exist_ok=True)
    inputs = None
    with lock(output) if main else nullcontext():  # held until the run ends, or its process dies
        if main:
            check_config(output, config.to_dict())
            inputs = run_inputs(config, benchmarks, read_inputs(output))
            check_inputs(output, inputs, fix=INPUTS_FIX)
            for message in repair(output):
                say(f"eval: {message}")
        process.wait_for_everyone()  # nobody reads before the main process has repaired the files

        worker = Worker(
            process.process_index,
            process.num_processes,
            "cpu" if config.device == "cpu" else str(process.device),
            progress and main,
            say,
        )
        generated = generate(config, units[worker.rank :: worker.processes], attacks, output, worker, inputs)
        process.wait_for_everyone()  # every response is on disk before any judge reads them
        judged = judge(judges, config, output, worker)
        process.wait_for_everyone()
        if not main:
            return []
        records = load_records(output, [(current.name, current.version) for current in judges])
        unjudged = sum(1 for record in records if len(record["verdicts"]) != len(judges))
        if unjudged:  # never a table over a part of the responses
            raise MosaError(f"{unjudged} responses in {output} lack a verdict after judging; rerun to complete them")
        rows = asr_rows(records, config.model_label)
        if generated or judged or not outputs_current(output):
            write_atomically(
                output / "records.jsonl", "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            )
            write_tables(rows, output)
            say(f"eval: {len(records)} records; tables in {output / 'asr.md'} and {output / 'asr.csv'}")
        else:
            say(f"eval: {output} is complete; nothing to do")
        return rows


# --- the plan -----------------------------------------------------------------------------------


def build_attacks(config: EvalConfig) -> dict[str, Attack]:
    attacks = {attack_label(spec): make_attack(spec["name"], attack_options(spec)) for spec in config.attacks}
    gen_length = SamplerConfig(**config.sampler).gen_length
    for attack in attacks.values():
        if hasattr(attack, "check_response_length"):
            attack.check_response_length(gen_length)
    if config.endpoint is not None:
        for label, attack in attacks.items():
            reason = getattr(attack, "needs_model_in_process", None)
            if reason:
                raise MosaError(
                    f"attack {label} cannot run against a served model: {reason}; "
                    "drop it from attacks, or leave endpoint out to evaluate the model in process"
                )
    return attacks


def build_judges(config: EvalConfig) -> list:
    judges = [make_judge(spec) for spec in config.judges]
    identities = [(judge.name, judge.version) for judge in judges]
    repeated = next((identity for identity in identities if identities.count(identity) > 1), None)
    if repeated:
        raise MosaError(f"judge {repeated[0]} (version {repeated[1]}) is given twice; give it once")
    return judges


def load_benchmarks(config: EvalConfig) -> dict[str, PromptSet]:
    """Each benchmark's prompt set, its first `limit` behaviours. The loaders refuse a file without a
    usable row, and the config refuses limit 0, so no benchmark is ever empty. A model's own prompt
    sources (the organism's held-out prompts) are those of the model under evaluation."""
    benchmarks = {}
    for spec in config.benchmarks:
        options = {key: value for key, value in spec.items() if key not in ("dataset", "label")}
        benchmarks[spec["label"]] = resolve_prompts(spec["dataset"], model=config.model, limit=config.limit, load_options=options)
    return benchmarks


def check_train_overlap(config: EvalConfig, benchmarks: dict[str, PromptSet], say: Callable[[str], None]) -> None:
    """Refuse, in one line, benchmarks that share prompts (by normalised text) with the training
    prompts that `mosa align` recorded beside the adapter, or beside a merged checkpoint."""
    trained = [(f"adapter {config.adapter}", config.adapter)] if config.adapter is not None else []
    if Path(config.model).is_dir():
        trained.append((f"model {config.model}", config.model))
    if config.adapter is not None and read_inputs(config.adapter) is None:
        say(
            f"eval: adapter {config.adapter} records no training prompts (inputs.json, written by mosa align); "
            "overlap is not checked"
        )
    for what, directory in trained:
        recorded = read_inputs(directory)
        if recorded is None:  # not written by mosa align: nothing to compare with
            continue
        training = {row["text_hash"] for row in recorded["prompts"]["prompts"]}
        counted = [
            (label, sum(prompt_hash(example.prompt) in training for example in prompts), len(prompts))
            for label, prompts in benchmarks.items()
        ]
        shared = [(label, count, total) for label, count, total in counted if count]
        if shared and not config.allow_train_overlap:
            counts = ", ".join(f"{label} shares {count} of its {total} prompts" for label, count, total in shared)
            raise MosaError(
                f"{what} was trained on prompts the benchmarks hold ({counts}; training prompts: "
                f"{recorded['prompts']['spec']}); evaluate on prompts it never saw, or pass --allow-train-overlap "
                "(--set allow_train_overlap=true) to measure them anyway"
            )
        for label, count, total in shared:
            say(f"eval: {label} shares {count} of its {total} prompts with the training prompts of {what} (allowed)")


def run_inputs(config: EvalConfig, benchmarks: dict[str, PromptSet], recorded: dict | None) -> dict:
    """What the run is made of, for inputs.json: content fingerprints (for a served model, the
    endpoint's URL and the id it serves the model under) and the benchmarks' prompt sets. What a
    server serves is read only when the run samples (open_target), so that a finished run resumes
    with the server down; until then the one `recorded` in inputs.json stands."""
    if config.endpoint is not None:
        backend = config.endpoint_backend()
        target = {"endpoint": {"base_url": backend.base_url, "model": backend.model}}
        served = ((recorded or {}).get("endpoint") or {}).get("served")
        if served is not None:
            target["endpoint"]["served"] = served
    else:
        target = {
            "model": fingerprint_model(config.model),
            "adapter": None if config.adapter is None else fingerprint_directory(config.adapter),
        }
    return {**target, "benchmarks": {label: prompts.record() for label, prompts in benchmarks.items()}}


def plan_units(benchmarks: dict[str, PromptSet], config: EvalConfig) -> list[Unit]:
    units = []
    for benchmark, behaviours in benchmarks.items():
        for spec in config.attacks:
            for start in range(0, len(behaviours), config.batch_size):
                group = behaviours.examples[start : start + config.batch_size]
                units.append(Unit(len(units), benchmark, attack_label(spec), spec["name"], group))
    return units


# --- stages 1 and 2: test cases and completions -------------------------------------------------


def generate(
    config: EvalConfig, units: list[Unit], attacks: dict[str, Attack], output: Path, worker: Worker, inputs: dict | None
) -> bool:
    """Build the missing test cases and sample the missing responses of `units`; True if it did any.
    `inputs` (the main process's): the run's inputs.json, whose model fingerprint is taken again
    once the model is loaded if it was recorded by name only (a hub id not yet in the cache). The
    target is made only when something is left to sample."""
    cases = {(r["benchmark"], r["attack"], r["behaviour_id"]): r["cases"] for r in read_stage(output, "cases")}
    completed = {completion_key(record) for record in read_stage(output, "completions")}

    def finished(unit: Unit) -> bool:
        keys = [(unit.benchmark, unit.attack, behaviour.id) for behaviour in unit.behaviours]
        return all(key in cases for key in keys) and all(
            (unit.benchmark, unit.attack, case["prompt_id"]) in completed for key in keys for case in cases[key]
        )

    pending = [unit for unit in units if not finished(unit)]
    if not pending:
        return False
    target = open_target(config, pending, len(units), output, worker, inputs)
    for unit in progress_bar(pending, desc="completions", unit="unit", disable=not worker.progress):
        unit_cases = build_cases(unit, attacks[unit.attack], target, cases, output, worker.rank)
        done = lambda case: (unit.benchmark, unit.attack, case.prompt_id) in completed  # noqa: B023 (used in this iteration only)
        for start in range(0, len(unit_cases), config.batch_size):
            batch = unit_cases[start : start + config.batch_size]
            if all(done(case) for _, case in batch):
                continue
            responses = respond(target, [case for _, case in batch])
            records = [
                completion_record(config, unit, start + offset, behaviour, case, response, target)
                for offset, ((behaviour, case), response) in enumerate(zip(batch, responses))
                if not done(case)
            ]
            append_lines(stage_file(output, "completions", worker.rank), records)
            completed.update(completion_key(record) for record in records)
    return True


def open_target(
    config: EvalConfig, pending: list[Unit], units: int, output: Path, worker: Worker, inputs: dict | None
) -> TargetBase:
    """The target the pending units are sampled on: the served model, or the model loaded here."""
    backend = config.endpoint_backend()
    if backend is not None:
        # The server checks each prompt against the model's positions as it is sent.
        worker.say(f"eval: {len(pending)} of {units} work units to sample; sending them to {backend.name}")
        served = ServedTarget(backend, config.sampler, seed=config.seed, batch_size=config.batch_size)
        # The main process records what is served; every process refuses a server that changed.
        check_served(output, inputs if inputs is not None else read_inputs(output), served, record=inputs is not None)
        return served
    behaviours = [behaviour.prompt for unit in pending for behaviour in unit.behaviours]
    # Every behaviour fits the model's positions, or the run stops before the load (an attack's longer
    # test cases are checked again as they are sampled).
    check_prompts_before_loading(
        model_path(config.model),
        behaviours,
        SamplerConfig(**config.sampler).gen_length,
        trust_remote_code=config.trust_remote_code,
        family=config.family,
    )
    worker.say(f"eval: {len(pending)} of {units} work units to sample; loading {config.model_label}")
    lm = load_target_model(config, worker)
    if inputs is not None and not inputs["model"]["content"]:
        check_inputs(output, {**inputs, "model": fingerprint_model(config.model)}, fix=INPUTS_FIX)
    return Target(lm, lm.sampler_config(**config.sampler, seed=config.seed), config.batch_size)


def check_served(output: Path, inputs: dict, target: ServedTarget, *, record: bool) -> None:
    """Refuse to sample a run on a server whose model is not the one its responses so far came from;
    the first time the run samples, record what the server serves (when `record`)."""
    endpoint = inputs["endpoint"]
    recorded = endpoint.get("served")
    if recorded is None:
        if record:
            write_inputs(output, {**inputs, "endpoint": {**endpoint, "served": target.served}})
        return
    changed = served_changes(recorded, target.served)
    if changed:
        raise MosaError(
            f"{output} was sampled on another model: the model served at {endpoint['base_url']} changed "
            f"({'; '.join(changed)}); resume against the same server, or start a new --output"
        )


def respond(target: TargetBase, cases: list[TestCase]) -> list[TargetResponse]:
    """The target's answers to the cases that want one sampled, sampled together (a response may
    depend on its batch); a case whose attack composed its answer (TestCase.response) keeps that
    answer, with no token ids or decoding order: no single sampling produced it."""
    to_sample = [case for case in cases if case.response is None]
    sampled = iter(target.respond(to_sample) if to_sample else [])
    return [TargetResponse(case.response, [], []) if case.response is not None else next(sampled) for case in cases]


def load_target_model(config: EvalConfig, worker: Worker) -> DiffusionLM:
    """The model under evaluation, with its adapter merged in (the sampler then runs at full speed)."""
    from transformers.utils import logging as transformers_logging

    from mosa.models import load_model, merge_adapter

    if not worker.progress:  # --quiet, or not the main process: no weight-loading bars either
        transformers_logging.disable_progress_bar()
    lm = load_model(
        model_path(config.model),
        trust_remote_code=config.trust_remote_code,
        family=config.family,
        dtype=config.dtype,
        device=worker.device,
    )
    return lm if config.adapter is None else merge_adapter(lm, config.adapter)


def build_cases(
    unit: Unit, attack: Attack, target: TargetBase, cases: dict, output: Path, rank: int
) -> list[tuple[Example, TestCase]]:
    """The unit's test cases, behaviour by behaviour in order. The attack runs on one behaviour at a
    time, and only on behaviours that have none saved; what it builds is saved, one line per
    behaviour, as soon as that behaviour is done, so a killed run never attacks a behaviour twice.
    A multi-round attack also saves its state between rounds (Target.rounds), and resumes mid-behaviour."""
    target.rounds = RoundStore(output / "rounds" / f"{safe_name(unit.benchmark)}--{safe_name(unit.attack)}")
    for behaviour in unit.behaviours:
        key = (unit.benchmark, unit.attack, behaviour.id)
        if key in cases:
            continue
        built = group_by_behaviour(attack.cases([behaviour], target), [behaviour], unit.attack)[behaviour.id]
        line = {
            "benchmark": unit.benchmark,
            "attack": unit.attack,
            "behaviour_id": behaviour.id,
            "cases": [dataclasses.asdict(case) for case in built],
        }
        append_lines(stage_file(output, "cases", rank), [line])
        target.rounds.clear(behaviour.id)
        cases[key] = line["cases"]
    return [
        (behaviour, case_from_dict(case))
        for behaviour in unit.behaviours
        for case in cases[(unit.benchmark, unit.attack, behaviour.id)]
    ]


def safe_name(label: str) -> str:
    """A label as a file name: anything but letters, digits, '.', '_' and '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)


def group_by_behaviour(built: list[TestCase], behaviours: list[Example], attack: str) -> dict[str, list[TestCase]]:
    """An attack names each case after its behaviour ("b1", or "b1@13" for one value of a sweep)."""
    grouped: dict[str, list[TestCase]] = {behaviour.id: [] for behaviour in behaviours}
    for case in built:
        owner = case.prompt_id if case.prompt_id in grouped else case.prompt_id.rpartition("@")[0]
        if owner not in grouped:
            raise MosaError(f"attack {attack} returned case {case.prompt_id!r}, which names none of the behaviours it was given")
        grouped[owner].append(case)
    return grouped


def case_from_dict(saved: dict) -> TestCase:
    """JSON keeps mapping keys as text; positions and steps are integers again."""
    return TestCase(
        prompt_id=saved["prompt_id"],
        behaviour=saved["behaviour"],
        messages=saved["messages"],
        prefill={int(position): text for position, text in saved["prefill"].items()},
        payload=saved["payload"],
        interventions={
            int(step): {int(position): text for position, text in spans.items()} for step, spans in saved["interventions"].items()
        },
        bans={int(position): texts for position, texts in saved.get("bans", {}).items()},
        response=saved.get("response"),
    )


def completion_record(
    config: EvalConfig, unit: Unit, case_index: int, behaviour: Example, case: TestCase, response, target: TargetBase
) -> dict:
    return {
        "benchmark": unit.benchmark,
        "attack": unit.attack,
        "attack_name": unit.attack_name,
        "prompt_id": case.prompt_id,
        "behaviour_id": behaviour.id,
        "behaviour": case.behaviour,
        "messages": case.messages,
        "prefill": case.prefill,  # JSON writes the positions and steps as text
        "interventions": case.interventions,
        "bans": case.bans,
        "composed": case.response is not None,  # the attack composed the response from several answers
        "payload": case.payload,
        "unit": unit.number,
        "case_index": case_index,
        "model": config.model,
        "adapter": config.adapter,
        "sampler": dataclasses.asdict(target.sampler),
        "response": response.text,
        "response_ids": response.response_ids,
        "commit_step": response.commit_step,
        # the model's forward passes for the batch this response was sampled in (the decoding is under "sampler")
        "forward_passes": response.forward_passes,
        # what the sampler's defences did (docs/sampler.md "Defences"): {"eos-monitor": {"step": 5, "score": 0.83}}
        "defence_events": response.defence_events,
        "order": response.order,  # None for a composed response
    }


# --- stage 3: verdicts --------------------------------------------------------------------------


def judge(judges: list, config: EvalConfig, output: Path, worker: Worker) -> bool:
    """Every judge rates every response it has not rated yet, `batch_size` at a time, each batch
    saved as it comes; True if it did any. A judge that fails (an endpoint down) stops the run with
    every verdict so far kept, and the rerun asks only for the rest. A response that the judge's
    server rejects alone gets an ERROR verdict with the server's message, said in one line, and is
    not asked again."""
    # The responses are shared out before the verdicts are read: the other processes may already be
    # appending verdicts, and each process's share must not depend on when it looked.
    completions = sorted(read_stage(output, "completions"), key=lambda record: (record["unit"], record["case_index"]))
    mine = completions[worker.rank :: worker.processes]
    judged = {verdict_key(record) for record in read_stage(output, "verdicts")}
    worked = False
    for current in judges:
        pending = [c for c in mine if (*completion_key(c), current.name, current.version) not in judged]
        if not pending:
            continue
        share = f" (this process's share of {worker.processes})" if worker.processes > 1 else ""
        worker.say(f"eval: judge {current.name} ({current.version}): {len(pending)} responses to rate{share}")
        bar = progress_bar(total=len(pending), desc=f"judge {current.name}", unit="response", disable=not worker.progress)
        for start in range(0, len(pending), config.batch_size):
            batch = pending[start : start + config.batch_size]
            verdicts = judge_recording_errors(current, [c["behaviour"] for c in batch], [c["response"] for c in batch])
            for c, verdict in zip(batch, verdicts):
                if verdict.label == ERROR:
                    worker.say(f"eval: judge {current.name}: {c['benchmark']}/{c['attack']}/{c['prompt_id']}: {verdict.error}")
            append_lines(
                stage_file(output, "verdicts", worker.rank),
                [
                    {
                        "benchmark": c["benchmark"],
                        "attack": c["attack"],
                        "prompt_id": c["prompt_id"],
                        "judge": current.name,
                        "judge_version": current.version,
                        **dataclasses.asdict(verdict),
                    }
                    for c, verdict in zip(batch, verdicts)
                ],
            )
            bar.update(len(batch))
        bar.close()
        worked = True
    return worked


# --- outputs ------------------------------------------------------------------------------------


def outputs_current(output: Path) -> bool:
    """records.jsonl and the tables exist and are newer than every stage file."""
    paths = [output / name for name in OUTPUTS]
    if not all(path.is_file() for path in paths):
        return False
    newest_stage = max((path.stat().st_mtime for stage in STAGES for path in stage_files(output, stage)), default=0)
    return min(path.stat().st_mtime for path in paths) >= newest_stage
