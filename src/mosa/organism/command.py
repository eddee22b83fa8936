"""`mosa organism build | card`: the small aligned-yet-jailbreakable dLLM that runs on a laptop.

The default organism ships with the package (`--model organism` everywhere); `build` makes one from
scratch, into the cache, and `--output` copies it out (how the shipped one is refreshed:
`mosa organism build --output src/mosa/organism/shipped`). The organism's plug-in adds this command
to `mosa` (mosa.cli.COMMANDS), which builds its parser for every command line: build.py and card.py,
which import torch, are imported only when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from mosa.cli.options import read_yaml_settings
from mosa.errors import MosaError
from mosa.paths import check_output_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser("organism", help="build the model organism (a small chat dLLM) and show its behaviour card")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build the organism from scratch, or reuse the cached build of the same config")
    build.add_argument("--config", type=Path, help="YAML with OrganismConfig fields (stage settings as nested mappings)")
    build.add_argument("--output", type=Path, help="also copy the build to this directory (new, or an earlier organism build)")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(run=run_build)
    card = actions.add_parser("card", help="print the behaviour card of a built organism")
    card.add_argument("path", help="an organism's checkpoint directory, or 'organism' (the shipped one)")
    card.set_defaults(run=run_card)


def organism_config(path: Path | None):
    from mosa.organism.build import OrganismConfig

    if path is None:
        return OrganismConfig()
    settings = read_yaml_settings(path, allowed=tuple(f.name for f in dataclasses.fields(OrganismConfig)))
    return OrganismConfig.from_dict(settings, where=f"--config {path}")


def run_build(args: argparse.Namespace) -> None:
    from mosa.organism.build import CARD_FILE, build_organism, organism_path
    from mosa.organism.card import format_card, read_card

    config = organism_config(args.config)
    if args.output is not None:  # before minutes of building, like every output path
        check_output_dir(args.output)
        if args.output.exists() and not (args.output / CARD_FILE).is_file():
            raise MosaError(f"--output {args.output} exists and is not an organism build; name a new directory")
    build_organism(config, progress=not args.quiet)
    print(format_card(read_card(organism_path(config))))
    if args.output is not None:
        shutil.rmtree(args.output, ignore_errors=True)
        shutil.copytree(organism_path(config), args.output)
        print(f"copied to {args.output}")


def run_card(args: argparse.Namespace) -> None:
    from mosa.organism.build import organism_directory
    from mosa.organism.card import format_card, read_card

    directory = organism_directory(args.path)
    if directory is None:
        raise MosaError(f"{args.path} has no behaviour_card.json; name an organism build, or 'organism'")
    print(format_card(read_card(directory)))
