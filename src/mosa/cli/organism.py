"""`mosa organism build | card`: the small aligned-yet-jailbreakable dLLM that runs on a laptop."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mosa.cli.options import read_yaml_settings
from mosa.errors import MosaError


def register(subparsers) -> None:
    parser = subparsers.add_parser("organism", help="build the model organism (a small chat dLLM) and show its behaviour card")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build the organism, or reuse the cached one with the same config")
    build.add_argument("--config", type=Path, help="YAML with OrganismConfig fields (stage settings as nested mappings)")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(run=run_build)
    card = actions.add_parser("card", help="print the behaviour card of a built organism")
    card.add_argument("path", type=Path, help="the organism's checkpoint directory")
    card.set_defaults(run=run_card)


def organism_config(path: Path | None):
    from mosa.organism.build import OrganismConfig

    if path is None:
        return OrganismConfig()
    settings = read_yaml_settings(path, allowed=tuple(f.name for f in dataclasses.fields(OrganismConfig)))
    return OrganismConfig.from_dict(settings, where=f"--config {path}")


def run_build(args: argparse.Namespace) -> None:
    from mosa.organism.build import build_organism, organism_path
    from mosa.organism.card import format_card, read_card

    config = organism_config(args.config)
    build_organism(config, progress=not args.quiet)
    print(format_card(read_card(organism_path(config))))


def run_card(args: argparse.Namespace) -> None:
    from mosa.organism.card import format_card, read_card

    if not (args.path / "behaviour_card.json").is_file():
        raise MosaError(f"{args.path} has no behaviour_card.json; build it with `mosa organism build`")
    print(format_card(read_card(args.path)))
