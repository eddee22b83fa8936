"""The `mosa` command line. Each subcommand lives in its own module and registers itself here.

Bad input raises `MosaError`; `main` prints it as one line (`mosa: error: ...`) and exits with 2.
"""

from __future__ import annotations

import argparse
import sys

from mosa.errors import MosaError


def build_parser() -> argparse.ArgumentParser:
    from mosa.cli import align, analyze, data, demo, generate, judge, organism
    from mosa.cli import eval as evaluation

    parser = argparse.ArgumentParser(
        prog="mosa", description="Safety toolkit for diffusion language models (MOSA, AAAI 2026)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (generate, demo, data, organism, align, judge, evaluation, analyze):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except MosaError as error:
        print(f"mosa: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mosa: interrupted", file=sys.stderr)
        return 130
    return 0
