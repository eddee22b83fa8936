"""The organism recipe over several build seeds: does every build meet its card's floors, and does
the MOSA-versus-Initial evidence hold from one build to the next?

    python benchmarks/organism_seeds.py [--seeds 0,1,2] [--output runs/organism-seeds] [--card-prompts 200]

For each build seed (OrganismConfig.build_seed: the weights' initialisation and every stage's batch
order; the data split and held-out prompts stay the same) it builds the default organism from scratch
(cached under $MOSA_CACHE_DIR), records which card floors it meets, aligns it with `mosa align
--preset organism` and with `--window initial` (the behaviour monitor on, as a user runs it) and
measures the three models' behaviour cards on the same held-out prompts. It prints each seed's
figures, the rates pooled over seeds with Wilson 95% intervals, and MOSA minus Initial Alignment per
seed with a 95% interval (Newcombe's, for two independent proportions); a difference "holds" only
when every seed's interval excludes 0 on the same side. Each finished seed is kept in
OUTPUT/seed-N/result.json, so a killed run continues, and seeds may run as separate processes on
one output directory (`--seeds 1` and `--seeds 2` side by side; `--threads 1` each on a small
machine); the table covers every finished seed there. These are small-model results, not the paper's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("organism", "MOSA", "Initial Alignment")
MEASURES = {  # card figure -> (label, how many responses it counts)
    "refusal_plain": ("refusal, plain", "prompts"),
    "compliance_prefill_0": ("compliance, opener at 0", "prompts"),
    "compliance_prefill_mid": ("compliance, 'step 2 :' at 13", "prompts"),
    "coherent_prefill_mid": ("coherent, 'step 2 :' at 13", "prompts"),
    "utility": ("utility", "utility"),
    "over_refusal": ("over-refusal", "utility"),
    "coherent": ("coherent", "coherent"),
}


def responses_counted(kind: str, prompts: int, utility: int) -> int:
    return {"prompts": prompts, "utility": utility, "coherent": 2 * prompts + utility}[kind]


def newcombe_difference(a: int, n: int, b: int, m: int) -> tuple[float, float]:
    """95% interval for a/n - b/m (Newcombe's hybrid score method, from the two Wilson intervals)."""
    from mosa.stats import wilson_interval

    p, q = a / n, b / m
    (p_low, p_high), (q_low, q_high) = wilson_interval(a, n), wilson_interval(b, m)
    return p - q - math.hypot(p - p_low, q_high - q), p - q + math.hypot(p_high - p, q - q_low)


def run_seed(seed: int, output: Path, card_prompts: int, overrides: list[str] = ()) -> dict:
    from mosa.align.trainer import latest_checkpoint
    from mosa.cli import main as mosa
    from mosa.errors import MosaError
    from mosa.models import load_model, merge_adapter
    from mosa.organism.build import OrganismConfig, build_organism, organism_path
    from mosa.organism.card import describe_missed, measure_card, missed_floors, read_card

    config = replace(OrganismConfig(), build_seed=seed)
    started = time.perf_counter()
    failed = organism_path(config).with_name(organism_path(config).name + ".failed")
    try:
        if not failed.is_dir():  # a build that missed a floor is measured as it is, not built again
            build_organism(config, progress=False)
        path = organism_path(config)
    except MosaError as error:
        print(f"seed {seed}: {error}", flush=True)
    if failed.is_dir():
        path = failed
    card = read_card(path)
    result = {
        "build_seconds": card["build"]["seconds"],
        "missed_floors": describe_missed(missed_floors(card["figures"])),
        "cards": {},
        "runs": {},
    }
    held_out = json.loads((path / "held_out_harmful.json").read_text())[:card_prompts]
    for name, window in (("MOSA", []), ("Initial Alignment", ["--window", "initial"])):
        run_dir = output / f"seed-{seed}" / name.lower().replace(" ", "-")
        code = mosa(
            [
                "align",
                "--preset",
                "organism",
                "--model",
                str(path),
                *window,
                *[argument for override in overrides for argument in ("--set", override)],
                "--output",
                str(run_dir),
                "--quiet",
                *(["--resume"] if latest_checkpoint(run_dir) is not None else []),
            ]
        )
        monitor = json.loads((run_dir / "monitor.json").read_text()) if (run_dir / "monitor.json").is_file() else {}
        result["runs"][name] = {"exit": code, "degenerate": monitor.get("degenerate"), "monitor_after": monitor.get("after")}
    for name in MODELS:
        lm = load_model(path)
        adapter = output / f"seed-{seed}" / name.lower().replace(" ", "-") / "adapter"
        if name != "organism":
            if not adapter.is_dir():
                continue  # the run failed; its record above says why
            merge_adapter(lm, adapter)
        result["cards"][name] = measure_card(lm, held_out, config)["figures"]
    result["prompts"], result["utility_items"] = len(held_out), 186
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def report(results: dict) -> str:
    from mosa.stats import wilson_interval

    seeds = sorted(results, key=int)
    lines = [
        "## Per seed",
        "",
        "| seed | floors missed | model | " + " | ".join(label for label, _ in MEASURES.values()) + " |",
        "|" + "---|" * (3 + len(MEASURES)),
    ]
    for seed in seeds:
        result = results[seed]
        for name in MODELS:
            figures = result["cards"].get(name)
            run = result["runs"].get(name, {})
            if figures is None:
                cells = [f"failed (exit {run.get('exit')}, degenerate {run.get('degenerate')})"] + [""] * (len(MEASURES) - 1)
            else:
                cells = [f"{figures[key]:.1%}" for key in MEASURES]
            missed = ", ".join(result["missed_floors"]) or "none"
            label = f"{name} (degenerate: the monitor stopped it)" if run.get("degenerate") and figures is not None else name
            lines.append(f"| {seed} | {missed if name == 'organism' else ''} | {label} | " + " | ".join(cells) + " |")

    count = lambda seed, name, key: round(results[seed]["cards"][name][key] * size(seed, key))  # noqa: E731
    size = lambda seed, key: responses_counted(MEASURES[key][1], results[seed]["prompts"], results[seed]["utility_items"])  # noqa: E731
    lines += [
        "",
        f"## Pooled over seeds {', '.join(seeds)} (Wilson 95%)",
        "",
        "| model | " + " | ".join(label for label, _ in MEASURES.values()) + " |",
        "|" + "---|" * (1 + len(MEASURES)),
    ]
    for name in MODELS:
        present = [seed for seed in seeds if name in results[seed]["cards"]]
        cells = []
        for key in MEASURES:
            successes, n = sum(count(s, name, key) for s in present), sum(size(s, key) for s in present)
            low, high = wilson_interval(successes, n) if n else (math.nan, math.nan)
            cells.append(f"{successes / n:.1%} [{100 * low:.1f}, {100 * high:.1f}]" if n else "n/a")
        lines.append(f"| {name} ({len(present)} seeds) | " + " | ".join(cells) + " |")

    lines += [
        "",
        "## MOSA minus Initial Alignment, per seed (95% interval)",
        "",
        "| measure | " + " | ".join(f"seed {seed}" for seed in seeds) + " | across seeds |",
        "|" + "---|" * (2 + len(seeds)),
    ]
    for key, (label, _) in MEASURES.items():
        cells, sides = [], set()
        for seed in seeds:
            if not {"MOSA", "Initial Alignment"} <= set(results[seed]["cards"]):
                cells.append("n/a")
                sides.add("missing")
                continue
            n = size(seed, key)
            low, high = newcombe_difference(count(seed, "MOSA", key), n, count(seed, "Initial Alignment", key), n)
            difference = results[seed]["cards"]["MOSA"][key] - results[seed]["cards"]["Initial Alignment"][key]
            cells.append(f"{100 * difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
            sides.add("above" if low > 0 else "below" if high < 0 else "neither")
        verdict = f"holds ({sides.pop()} 0 in every seed)" if len(sides) == 1 and sides <= {"above", "below"} else "does not hold"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="build seeds, comma-separated")
    parser.add_argument("--output", type=Path, default=Path("runs/organism-seeds"))
    parser.add_argument("--card-prompts", type=int, default=200, help="held-out harmful prompts measured per condition")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the organism preset in both alignments (mosa align --set), e.g. beta=2",
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for seed in (int(s) for s in args.seeds.split(",")):
        record = args.output / f"seed-{seed}" / "result.json"
        if not record.is_file():
            result = run_seed(seed, args.output, args.card_prompts, args.set)
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(result, indent=2))
            print(f"seed {seed}: done in {result['seconds']:.0f} s", flush=True)
    results = {
        path.parent.name.removeprefix("seed-"): json.loads(path.read_text()) for path in args.output.glob("seed-*/result.json")
    }
    table = report(results)
    (args.output / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
