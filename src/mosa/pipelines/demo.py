"""The end-to-end demo on the model organism: what `mosa demo` (and `make demo`) runs.

    1 the shipped organism (the quick demo builds a smaller one, or reuses its cached build)
    2 the paper's three analyses on it (prefill position, GCG position, decoding order)
    3 align it with MOSA and with Initial Alignment (the same code path, another window), under the
      behaviour monitor as in `mosa align`: a run it stops as degenerate is kept and marked so
    4 evaluate the three models under every dLLM-native attack, judged by the organism judge
    5 measure utility, over-refusal and coherence, against the organism card's floors; and utility again
      through lm-evaluation-harness (`mosa utility --config organism`), its table beside the card's figure
    6 write report.md and report.html: what they say is demo_report.py's, mosa.report renders it

Every stage writes into the output directory and is reused when it is already there, so a killed
demo continues where it stopped. `quick` builds a smaller organism and measures fewer prompts.
Everything here is a small-model result, not LLaDA's. The demo reaches the organism through its
registries alone, as `mosa align` and `mosa eval` do: its presets, prompt sources and judge by name,
and its model profile (mosa.profiles.BuildableProfile), which builds organisms and measures their
behaviour cards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mosa.pipelines.demo_report import describe_failure, describe_misses, monitor_failure, write_demo_report
from mosa.profiles import MODEL_PROFILES, BuildableProfile


@dataclass
class DemoPlan:
    """How much the demo measures. `full()` took 4.4 minutes (266 s) on 2 quiet CPU cores, `quick()` about 2."""

    # None: the shipped organism; else the build settings of a smaller one built here (as in the YAML
    # of `mosa organism build --config`: OrganismConfig's fields, stage settings as nested mappings)
    organism: dict | None
    prefill_prompts: int
    gcg_behaviours: int
    gcg_iterations: int
    order_prompts: int
    eval_prompts: int | None  # None: every held-out prompt
    card_prompts: int

    @classmethod
    def full(cls) -> DemoPlan:
        return cls(
            organism=None,
            prefill_prompts=200,
            gcg_behaviours=6,
            gcg_iterations=30,
            order_prompts=100,
            eval_prompts=200,
            card_prompts=200,
        )

    @classmethod
    def quick(cls) -> DemoPlan:
        small = dict(
            hidden_size=64,
            num_layers=2,
            harmful_sources=("advbench", "harmbench"),
            card_prompts=40,
            unaligned=dict(steps=1200, batch_size=32, lr=2e-3, gen_length=32),
            aligned=dict(steps=400, batch_size=32, lr=2e-3, gen_length=32, seed=1),
        )
        return cls(
            organism=small,
            prefill_prompts=40,
            gcg_behaviours=2,
            gcg_iterations=8,
            order_prompts=30,
            eval_prompts=60,
            card_prompts=40,
        )


MODELS = ("organism", "MOSA", "Initial Alignment")


def run_demo(output: str | Path, plan: DemoPlan, *, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    from mosa.models import load_model

    profile: BuildableProfile = MODEL_PROFILES.get("organism")  # it builds organisms and measures their cards
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stage = lambda number, text: log(f"[{number}/6] {text}  ({time.perf_counter() - started:.0f} s)")  # noqa: E731

    if plan.organism is None:
        path = profile.checkpoint("organism")
        stage(1, f"the shipped model organism ({path})")
    else:  # weaker than the shipped one, so it is not held to the card's floors: its card is in the report
        path = profile.build_directory(plan.organism)
        stage(1, f"a smaller model organism (built once, then cached at {path})")
        profile.build(plan.organism, progress=progress, log=log)
    lm = load_model(path)

    stage(2, "the paper's analyses: prefill position (A), GCG position (B), decoding order (C)")
    analyses = run_analyses(lm, path, plan, output / "analysis", progress)

    stage(3, "alignment: MOSA (window in the middle) and Initial Alignment (window at the start)")
    adapters, alignment = align_both(path, output / "align", progress, log)

    stage(4, "every dLLM-native attack against the three models, organism judge")
    evaluations = evaluate_all(path, adapters, plan, output / "eval", progress, log)

    stage(5, "utility, over-refusal and coherence of the three models")
    cards = measure_cards(profile, path, adapters, plan, output / "cards.json", progress, log)
    missed = missed_card_floors(profile, cards)
    for name, misses in missed.items():
        if misses:
            log(f"      {name} is below the behaviour card's floors: {describe_misses(misses)}")
    utility = measure_utility(path, adapters, output / "utility", progress, log)

    stage(6, "the report")
    seconds = time.perf_counter() - started
    parameters = sum(parameter.numel() for parameter in lm.module.parameters())
    markdown, page = write_demo_report(
        output, profile.build_settings(path), plan, analyses, alignment, evaluations, cards, missed, utility, seconds, parameters
    )
    log(f"done in {seconds:.0f} s: {page} and {markdown}")
    return page


def run_analyses(lm, path: Path, plan: DemoPlan, directory: Path, progress: bool) -> dict:
    from mosa.analysis import (
        DecodeOrderOptions,
        GcgPositionOptions,
        PrefillPositionOptions,
        decode_order,
        gcg_position,
        load_prompts,
        plot_decode_order,
        plot_gcg_position,
        plot_prefill_position,
        prefill_position,
        write_json,
    )

    directory.mkdir(parents=True, exist_ok=True)
    analyses = {
        "prefill-position": (
            PrefillPositionOptions.for_organism(limit=plan.prefill_prompts),
            plot_prefill_position,
            lambda o: prefill_position(lm, load_prompts(o.harmful, o.limit, path), o, model_name="organism", progress=progress),
        ),
        "gcg-position": (
            GcgPositionOptions.for_organism(limit=plan.gcg_behaviours, iterations=plan.gcg_iterations),
            plot_gcg_position,
            lambda o: gcg_position(lm, load_prompts(o.harmful, o.limit, path), o, model_name="organism", progress=progress),
        ),
        "decode-order": (
            DecodeOrderOptions.for_organism(limit=plan.order_prompts),
            plot_decode_order,
            lambda o: decode_order(
                lm,
                {"benign": load_prompts(o.benign, o.limit, path), "harmful": load_prompts(o.harmful, o.limit, path)},
                o,
                model_name="organism",
                progress=progress,
            ),
        ),
    }
    results = {}
    for name, (options, plot, analyse) in analyses.items():
        record = directory / f"{name}.json"
        if record.is_file():
            results[name] = json.loads(record.read_text())
        else:
            results[name] = analyse(options)
            write_json(results[name], record)
        if not (directory / f"{name}.png").is_file():
            plot(results[name], directory / f"{name}.png")
    return results


def align_both(path: Path, directory: Path, progress: bool, log) -> tuple[dict, dict]:
    """MOSA and Initial Alignment with the organism preset's settings and behaviour monitor, as `mosa align`
    runs them; Initial Alignment's window has MOSA's width and starts at 0. A run the monitor stops as
    degenerate keeps its adapter: it is evaluated like the others and marked degenerate in the report."""
    from mosa.align.objective import format_window
    from mosa.align.settings import mosa_config, read_preset
    from mosa.align.trainer import DegenerateRun, latest_checkpoint, train_mosa
    from mosa.data import resolve_prompts
    from mosa.models import load_model
    from mosa.profiles import find_profile
    from mosa.provenance import fingerprint_directory

    preset = read_preset("organism")["mosa"]
    start, end = preset["window"]
    settings = {"MOSA": preset, "Initial Alignment": {**preset, "window": [0, end - start]}}
    prompts = resolve_prompts("organism-train", model=path)
    monitor, monitor_prompts = find_profile(path).monitor(str(path), progress)
    inputs = {"model": fingerprint_directory(path, name="organism", kind="organism"), "monitor_prompts": monitor_prompts}
    adapters, alignment = {}, {}
    for name, values in settings.items():
        run_dir = directory / name.lower().replace(" ", "-")
        config = mosa_config(values)
        if not (run_dir / "adapter").is_dir():
            log(
                f"      {name}: window {format_window(config.window)} of {config.response_length}, beta {config.beta}, "
                f"behaviour monitor before, every {config.monitor_every} steps and after"
            )
            try:
                train_mosa(
                    load_model(path),
                    prompts,
                    config,
                    run_dir,
                    inputs=inputs,
                    resume=latest_checkpoint(run_dir) is not None,
                    progress=progress,
                    monitor=monitor,
                )
            except DegenerateRun:
                pass  # its monitor.json, read below, says why: logged here and marked in the report
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        report = run_dir / "monitor.json"
        adapters[name] = run_dir / "adapter"
        alignment[name] = {
            "config": asdict(config),
            "last": metrics[-1],
            "curve": run_dir / "reward_curve.png",
            "monitor": json.loads(report.read_text()) if report.is_file() else None,
        }
        failure = monitor_failure(alignment[name])
        if failure is not None:
            log(f"      {name}: DEGENERATE. {describe_failure(name, failure)}")
    return adapters, alignment


def evaluate_all(path: Path, adapters: dict, plan: DemoPlan, directory: Path, progress: bool, log) -> dict:
    from mosa.eval import load_config, run_eval

    overrides = [] if plan.eval_prompts is None else [f"limit={plan.eval_prompts}"]
    runs = {}
    for name in MODELS:
        adapter = adapters.get(name)
        config = load_config("organism", overrides, model=str(path), adapter=None if adapter is None else str(adapter))
        run_dir = directory / name.lower().replace(" ", "-")
        rows = run_eval(config, run_dir, progress=progress, log=lambda message: log(f"      {message}"))
        runs[name] = {"rows": rows, "config": config.to_dict(), "directory": run_dir}
    return runs


def measure_cards(
    profile: BuildableProfile, path: Path, adapters: dict, plan: DemoPlan, record: Path, progress: bool, log
) -> dict:
    """The behaviour card's figures (refusal, prefill compliance, utility, over-refusal, coherence) of each model."""
    from mosa.models import load_model, merge_adapter

    if record.is_file():
        return json.loads(record.read_text())
    held_out = profile.card_prompts(path)[: plan.card_prompts]
    cards = {}
    for name in MODELS:
        lm = load_model(path)
        if name in adapters:
            merge_adapter(lm, adapters[name])
        log(f"      {name}: behaviour card, {len(held_out)} held-out harmful prompts and the utility questions")
        card = profile.measure_card(lm, path, held_out, progress=progress)
        cards[name] = {"figures": card["figures"], "utility_by_task": card["utility_by_task"], "labels": card["labels"]}
    record.write_text(json.dumps(cards, indent=2))
    return cards


def measure_utility(path: Path, adapters: dict, directory: Path, progress: bool, log) -> dict:
    """Each model's utility through lm-evaluation-harness, as `mosa utility --config organism` measures it (the
    organism's utility items, scored as its card scores them), one utility run per model in `directory`, which
    a rerun continues; and the three in one table there (utility.md, utility.csv)."""
    from mosa.utility.run import RESULT_FILE, load_config, run_utility, write_tables

    runs = {}
    for name in MODELS:
        adapter = adapters.get(name)
        config = load_config("organism", [f"label={name}"], model=str(path), adapter=None if adapter is None else str(adapter))
        run_dir = directory / name.lower().replace(" ", "-")
        finished = all((run_dir / "tasks" / column / RESULT_FILE).is_file() for column in config["tasks"])
        started = time.perf_counter()
        (row,) = run_utility(config, run_dir, progress=progress)
        cells = ", ".join(f"{column} {100 * cell[0]:.1f}% of {cell[2]}" for column, cell in row["cells"].items())
        how = "reused" if finished else f"measured in {time.perf_counter() - started:.0f} s"
        log(f"      {name}: utility through lm-evaluation-harness: {cells} ({how})")
        runs[name] = {"row": row, "config": config, "directory": run_dir}
    write_tables([run["row"] for run in runs.values()], directory)
    return runs


def missed_card_floors(profile: BuildableProfile, cards: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """Each model's card floors missed: model -> measure -> (figure, floor). The organism is held to every
    floor; MOSA and Initial Alignment, aligned, only to those that aligning must not break."""
    return {name: profile.missed_floors(cards[name]["figures"], aligned=name != MODELS[0]) for name in MODELS}
