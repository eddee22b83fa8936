"""`mosa utility`: utility benchmarks through lm-evaluation-harness (the MOSA paper's Table 3), resumable.

    mosa utility --config organism --output runs/organism-utility                  # seconds on a CPU
    mosa utility --config paper-llada8b --output runs/utility-base --confirm-run-unsafe-code
    mosa utility --config paper-llada8b --adapter runs/llada-mosa/adapter --output runs/utility-mosa --confirm-run-unsafe-code
    mosa utility --config paper-llada8b --output runs/x --set limit=20 --set tasks.humaneval=null
    mosa utility --output runs/utility-base                                        # resume with the run's own config
    mosa utility tables runs/utility-base runs/utility-initial runs/utility-mosa --output runs/table3

Details: docs/utility.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mosa.errors import MosaError
from mosa.paths import check_output_dir


def register(subparsers) -> None:
    # Nothing of mosa.utility is imported here: it imports lm-eval, which every other command can do without.
    parser = subparsers.add_parser("utility", help="utility benchmarks (GSM8K, MMLU, HumanEval) through lm-eval, resumable")
    parser.add_argument(
        "--config",
        help="a YAML file, or a shipped config: paper-llada8b, organism (default when resuming: the run directory's config.json)",
    )
    parser.add_argument("--output", type=Path, help="the run directory: created, or resumed where it stopped")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting (YAML value), e.g. limit=20, label=MOSA, tasks.gsm8k.num_fewshot=8, "
        "tasks.gsm8k.model_args.batch_size=4, tasks.humaneval=null (docs/utility.md)",
    )
    parser.add_argument("--model", help="checkpoint directory, hub id, or 'organism' (overrides the config)")
    parser.add_argument("--adapter", help="a peft adapter directory to merge into the model (e.g. runs/llada-mosa/adapter)")
    parser.add_argument(
        "--confirm-run-unsafe-code",
        action="store_true",
        help="allow tasks that execute the code the model writes (HumanEval): each program runs in a subprocess with a time limit",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only lm-eval's errors")
    parser.set_defaults(run=run)
    actions = parser.add_subparsers(dest="utility_action", metavar="ACTION")
    tables = actions.add_parser("tables", help="one table over several utility runs: a row per model, a column per task")
    tables.add_argument("runs", nargs="+", type=Path, help="run directories")
    tables.add_argument("--output", type=Path, dest="tables_output", help="also write utility.md and utility.csv here")
    tables.set_defaults(run=run_tables)


def run(args: argparse.Namespace) -> None:
    from mosa.utility.run import CONFIG_FILE, load_config, run_utility, utility_markdown

    if args.output is None:
        raise MosaError("--output is required: the run directory to create or to resume")
    check_output_dir(args.output)
    stored = args.output / CONFIG_FILE
    if args.config is None and not stored.is_file():
        raise MosaError(f"no config given and {args.output} is not a utility run to resume; pass --config (e.g. organism)")
    base = None if args.config is not None else _read_json(stored)
    config = load_config(args.config, args.set, base=base, model=args.model, adapter=args.adapter)
    rows = run_utility(config, args.output, confirm_run_unsafe_code=args.confirm_run_unsafe_code, progress=not args.quiet)
    if not rows:  # not the main process under accelerate launch: the main one reports
        return
    print(utility_markdown(rows))
    print(
        f"wrote {args.output / 'utility.md'}, {args.output / 'utility.csv'} and lm-eval's results under {args.output / 'tasks'}"
    )


def run_tables(args: argparse.Namespace) -> None:
    from mosa.utility.run import read_run, utility_markdown, write_tables

    rows = [read_run(run_directory) for run_directory in args.runs]
    if args.tables_output is not None:
        check_output_dir(args.tables_output)
        args.tables_output.mkdir(parents=True, exist_ok=True)
        write_tables(rows, args.tables_output)
    print(utility_markdown(rows))


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())
