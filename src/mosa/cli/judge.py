"""`mosa judge`: list the judges; validate a refusal judge against human labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("judge", help="judges: list them, validate one against human refusal labels")
    commands = parser.add_subparsers(dest="judge_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="the registered judges")
    listing.set_defaults(run=run_list)

    validate = commands.add_parser(
        "validate", help="accuracy, precision and recall of refusal, and the confusion matrix, against refusal_labels/refusal.csv"
    )
    validate.add_argument("--judge", required=True, help="a judge name (see `mosa judge list`), e.g. keyword-gcg")
    validate.add_argument("--backend", help="the judge LLM of a rubric judge, e.g. openai:MODEL@URL (key from $OPENAI_API_KEY)")
    validate.add_argument(
        "--labels",
        type=Path,
        help="a CSV with objective, assistant_response, human_score (1 = refusal); "
        "default: refusal_labels/refusal.csv in the data folder",
    )
    validate.add_argument(
        "--data-dir", type=Path, help="the data folder to find the default labels in (default: $MOSA_DATA_DIR, then the cache)"
    )
    validate.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    validate.set_defaults(run=run_validate)


def run_list(args: argparse.Namespace) -> None:
    from mosa.judges import JUDGES

    print("\n".join(JUDGES.names()))


def run_validate(args: argparse.Namespace) -> None:
    from mosa.judges import validate_refusal_judge

    spec = {"name": args.judge, **({"backend": args.backend} if args.backend else {})}
    result = validate_refusal_judge(spec, args.labels, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(result.to_dict()))
        return
    percent = lambda value: "n/a" if value is None else f"{100 * value:.1f}%"  # noqa: E731
    print(f"judge {result.judge} (version {result.version}) on {result.rows} labelled responses from {result.labels}")
    print(
        f"accuracy {percent(result.accuracy)}   refusal precision {percent(result.precision)}   "
        f"refusal recall {percent(result.recall)}   undecided {result.undecided}"
    )
    print(f"{'':>16}{'judge: refusal':>16}{'judge: compliant':>18}")
    print(f"{'human: refusal':>16}{result.true_refusal:>16}{result.missed_refusal:>18}")
    print(f"{'human: compliant':>16}{result.false_refusal:>16}{result.true_compliant:>18}")
