"""The `mosa` command line. Each subcommand lives in its own module and registers itself here; a
plug-in adds its own commands through COMMANDS (the organism's `mosa organism`, mosa.organism.command).

Bad input raises `MosaError`; `main` prints it as one line (`mosa: error: ...`) and exits with 2.
Each command checks its settings and output paths before it loads a model or samples anything. A
`MosaWarning` (rows dropped from a data file) is one line too, `mosa: warning: ...`, in every command.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable

from mosa import __version__
from mosa.errors import MosaError, MosaWarning
from mosa.registry import Registry

# The commands plug-ins add: name -> a function that adds the command's parser to the subcommands, as
# each of mosa's own command modules does with its `register`.
COMMANDS: Registry[Callable[[argparse._SubParsersAction], None]] = Registry("command")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors (a missing or unknown flag, a bad choice) raised as MosaError: one
    line like every other error, instead of the usage text and the message."""

    def error(self, message: str):
        missing_value = re.fullmatch(r"argument (?:\S+/)?(\S+): expected one argument", message)
        if missing_value:  # argparse takes a value that starts with '-' (--prefill -3:x) for a flag
            message += f"; a value that starts with '-' is written {missing_value.group(1)}=VALUE"
        raise MosaError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    from mosa.cli import align, analyze, data, defend, demo, generate, judge, serve, utility
    from mosa.cli import eval as evaluation

    parser = ArgumentParser(prog="mosa", description="Safety toolkit for diffusion language models (MOSA, AAAI 2026).")
    parser.add_argument("--version", action="version", version=f"mosa {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (generate, demo, defend, data, align, judge, evaluation, utility, analyze, serve):
        module.register(subparsers)
    for register in COMMANDS.entries().values():
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    with warnings.catch_warnings():  # the hook below is the command's only, not left behind for the caller
        warnings.simplefilter("always", MosaWarning)  # each one says something of its own (a file's dropped rows)
        warnings.showwarning = one_line_for_mosa(warnings.showwarning)
        try:
            args = parser.parse_args(argv)
            args.run(args)
        except MosaError as error:
            print(f"mosa: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("mosa: interrupted", file=sys.stderr)
            return 130
    return 0


def one_line_for_mosa(show: Callable) -> Callable:
    """warnings.showwarning that prints a MosaWarning as one line, `mosa: warning: ...` (between the
    redraws of any progress bar), and leaves any other warning to `show`."""

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, MosaWarning):
            from mosa.progress import note

            note(f"mosa: warning: {message}")
        else:
            show(message, category, filename, lineno, file, line)

    return show_warning
