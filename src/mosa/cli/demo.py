"""`mosa demo`: the paper's claims, measured on the model organism, as report.html and report.md.

mosa demo                      # about 4.5 minutes on 2 CPU cores, on the shipped organism
mosa demo --quick              # about 2 minutes: a smaller organism, fewer prompts
mosa demo --output runs/demo   # a killed demo continues where it stopped when run again
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mosa.paths import check_output_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="take the shipped model organism, run the analyses, align it with MOSA and Initial Alignment, attack all "
        "three and write a report (CPU, minutes)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smaller organism and fewer prompts (about 2 minutes on 2 CPU cores, its organism build included)",
    )
    parser.add_argument("--output", type=Path, help="where the run and the report go (default: runs/demo or runs/demo-quick)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from mosa.pipelines.demo import DemoPlan, run_demo

    plan = DemoPlan.quick() if args.quick else DemoPlan.full()
    output = args.output or Path("runs/demo-quick" if args.quick else "runs/demo")
    check_output_dir(output)
    run_demo(output, plan, progress=not args.quiet)
    print("These are a small model's results, built to exercise the pipeline; they are not results about LLaDA.")
