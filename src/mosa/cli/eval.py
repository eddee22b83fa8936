"""`mosa eval`: benchmarks x attacks x judges on a dLLM (and adapter), resumable, with ASR tables.

    mosa eval --config organism --output runs/organism                 # a shipped config
    mosa eval --config run.yaml --output runs/x --set limit=20 --set sampler.steps=64
    mosa eval --config paper-llada8b --adapter runs/llada-mosa/adapter --output runs/llada-mosa-eval
    mosa eval --output runs/x                                          # resume with the run's own config
    mosa eval tables runs/x                                            # remake asr.md / asr.csv
    mosa eval tables runs/base runs/mosa --output runs/compare          # one table, a row per model
    mosa eval tables runs/base runs/initial runs/mosa --output runs/t1 --layout paper   # Table 1's layout
    mosa eval tables runs/base runs/mosa --output runs/compare --utility runs/utility-base runs/utility-mosa   # and Table 3
    accelerate launch --multi_gpu --num_processes 2 -m mosa eval --config ... --output runs/x

Details: docs/eval.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mosa.errors import MosaError
from mosa.paths import check_output_dir


def register(subparsers) -> None:
    from mosa.eval.config import SETTINGS

    parser = subparsers.add_parser("eval", help="attack success rates: benchmarks x attacks x judges, resumable runs")
    parser.add_argument(
        "--config",
        help="a YAML file, or a shipped config: organism, paper-llada8b, canvas-llada8b (default when resuming: the run directory's config.json)",
    )
    parser.add_argument("--output", type=Path, help="the run directory: created, or resumed where it stopped")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting (YAML value), e.g. limit=20; sampler.steps=64 reaches into a mapping. "
        f"Keys: {', '.join(SETTINGS)} (docs/eval.md)",
    )
    parser.add_argument("--model", help="checkpoint directory, hub id, or 'organism' (overrides the config)")
    parser.add_argument("--adapter", help="a peft adapter directory to merge into the model (e.g. runs/mosa/adapter)")
    parser.add_argument(
        "--allow-train-overlap",
        action="store_true",
        help="evaluate benchmarks that share prompts with the adapter's training prompts (refused otherwise)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)
    actions = parser.add_subparsers(dest="eval_action", metavar="ACTION")
    tables = actions.add_parser("tables", help="(re)make asr.md and asr.csv from one or more run directories")
    tables.add_argument("runs", nargs="+", type=Path, help="run directories")
    tables.add_argument(
        "--output",
        type=Path,
        dest="tables_output",
        help="where to write the tables (needed for several runs; default: the run directory)",
    )
    tables.add_argument(
        "--layout",
        choices=("asr", "paper"),
        default="asr",
        help="what to print: asr (every count and interval) or paper (a row per model, a column pair per attack "
        "for the paper's two judges, and the mean; also written to paper.md)",
    )
    tables.add_argument(
        "--utility",
        nargs="+",
        type=Path,
        default=[],
        metavar="URUN",
        help="utility run directories (mosa utility): also print their table, a row per model of the ASR runs "
        "(matched by model and adapter) and a column per task, and write utility.md and utility.csv",
    )
    tables.set_defaults(run=run_tables)


def run(args: argparse.Namespace) -> None:
    from mosa.eval import load_config, run_eval
    from mosa.eval.store import CONFIG_FILE, read_config
    from mosa.eval.tables import asr_markdown

    if args.output is None:
        raise MosaError("--output is required: the run directory to create or to resume")
    check_output_dir(args.output)
    resuming = args.config is None and (args.output / CONFIG_FILE).is_file()
    overrides = [*args.set, *(["allow_train_overlap=true"] if args.allow_train_overlap else [])]
    config = load_config(
        args.config, overrides, base=read_config(args.output) if resuming else None, model=args.model, adapter=args.adapter
    )
    rows = run_eval(config, args.output, progress=not args.quiet)
    if rows:
        print(asr_markdown(rows))


def run_tables(args: argparse.Namespace) -> None:
    from mosa.eval.tables import asr_markdown, has_paper_judges, paper_markdown, rows_of_runs, unjudged, write_tables

    if len(args.runs) > 1 and args.tables_output is None:
        raise MosaError("several runs make one table: give --output DIR for it")
    destination = args.tables_output or args.runs[0]
    check_output_dir(destination, "--output" if args.tables_output else "the run directory")
    rows = rows_of_runs(args.runs)
    shown = paper_markdown(rows) if args.layout == "paper" else asr_markdown(rows)  # refused before anything is written
    utility = utility_rows(args.runs, args.utility)
    destination.mkdir(parents=True, exist_ok=True)
    write_tables(rows, destination)
    print(shown)
    if utility:
        from mosa.utility import run as utility_run

        utility_run.write_tables(utility, destination)
        print(f"# Utility (lm-evaluation-harness)\n\n{utility_run.utility_markdown(utility)}\n")
    for run_directory in args.runs:
        missing = unjudged(run_directory)
        if missing:
            print(
                f"mosa: warning: {run_directory}: {missing} responses lack a verdict; `mosa eval --output {run_directory}` "
                "completes them"
            )
    written = ["asr.md", "asr.csv", *(["paper.md"] if has_paper_judges(rows) else [])]
    written += ["utility.md", "utility.csv"] if utility else []
    print(f"wrote {', '.join(str(destination / name) for name in written)}")


def utility_rows(runs: list[Path], utility_runs: list[Path]) -> list[dict]:
    """The utility table's rows for the ASR runs' models (none without --utility). mosa.utility imports
    lm-eval, which the ASR tables do without."""
    if not utility_runs:
        return []
    from mosa.eval.tables import run_models
    from mosa.utility.run import rows_for_models

    return rows_for_models(run_models(runs), utility_runs)
