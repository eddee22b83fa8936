"""`mosa defend compare`: the defences on the model organism side by side, under every dLLM-native
attack, with utility, over-refusal and the cost of training each (mosa.pipelines.defend).

    mosa defend compare                                # the shipped organism, 200 prompts per attack
    mosa defend compare --quick                        # a smaller organism, 40 prompts per attack
    mosa defend compare --set eval_prompts=100 --set align.max_steps=100 --output runs/defend
    mosa defend compare --output runs/defend           # a killed comparison continues when run again

Writes defences.md, defences.csv, defences.png, report.md and report.html in --output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mosa.errors import MosaError
from mosa.paths import check_output_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "defend", help="compare defences (alignment objectives, sampler defences) on the model organism under every attack"
    )
    actions = parser.add_subparsers(dest="defend_action", metavar="ACTION")
    compare = actions.add_parser(
        "compare",
        help="train Initial Alignment, MOSA, A2D-style and primed MOSA, and evaluate them and the sampler defences "
        "under every dLLM-native attack, with utility and over-refusal (CPU, minutes)",
    )
    compare.add_argument(
        "--output", type=Path, help="where the runs and the report go (default: runs/defend or runs/defend-quick)"
    )
    compare.add_argument(
        "--quick", action="store_true", help="a smaller organism (built once, then cached) and 40 prompts per attack"
    )
    compare.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="eval_prompts=N (per attack), utility_items=N, or align.FIELD=VALUE (a MosaConfig field of every alignment run)",
    )
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from mosa.pipelines.defend import DefendPlan, run_compare

    if args.defend_action != "compare":
        raise MosaError("mosa defend needs an action: compare (e.g. mosa defend compare --quick)")
    plan = (DefendPlan.quick() if args.quick else DefendPlan.full()).with_settings(args.set)
    output = args.output or Path("runs/defend-quick" if args.quick else "runs/defend")
    check_output_dir(output)
    run_compare(output, plan, progress=not args.quiet)
    print("These are a small model's results, built to exercise the pipeline; they are not results about LLaDA.")
