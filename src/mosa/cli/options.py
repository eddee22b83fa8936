"""Options shared by subcommands: model loading and sampler settings, from YAML and flags.

Precedence: dataclass defaults < the YAML file given with --config < flags on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mosa.errors import MosaError
from mosa.sampling import SamplerConfig
from mosa.yamlio import parse_yaml

# Sampler settings that a user sets; special ids come from the model.
SAMPLER_FLAGS = ("gen_length", "steps", "block_length", "temperature", "cfg_scale", "remasking", "seed", "decoding", "threshold")
SAMPLER_SWITCHES = ("logits_eos_inf", "confidence_eos_eot_inf")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        help="checkpoint directory or hub id (LLaDA, MMaDA, Dream, or a Llama used bidirectionally), or 'organism' (the shipped model organism)",
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the checkpoint's own model code instead of mosa's native LLaDA / MMaDA / Dream loading (for variants it does not cover)",
    )
    group.add_argument("--family", help="override the family detected from config.json (llada, mmada, dream, bidirectional)")
    group.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"], help="auto: the checkpoint's own dtype"
    )
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampler (defaults: docs/sampler.md; YAML via --config, flags override it)")
    group.add_argument("--config", type=Path, help="YAML file with sampler settings (keys of SamplerConfig)")
    fields = {f.name: f for f in dataclasses.fields(SamplerConfig)}
    for name in SAMPLER_FLAGS:
        kind = float if name == "threshold" else type(fields[name].default)  # threshold's default is None
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=f"default {fields[name].default}")
    for name in SAMPLER_SWITCHES:
        group.add_argument(f"--{name.replace('_', '-')}", action="store_true", default=None)
    group.add_argument(
        "--defence",
        action="append",
        metavar="NAME[:OPTION=VALUE,...]",
        help="a training-free defence, e.g. eos-monitor:threshold=0.6,reduce=max (repeatable; docs/sampler.md, Defences)",
    )


def sampler_settings(args: argparse.Namespace) -> dict:
    """Sampler settings from --config, then overridden by the flags the user actually gave."""
    settings = {}
    if args.config is not None:
        settings.update(read_yaml_settings(args.config, allowed=SAMPLER_FLAGS + SAMPLER_SWITCHES + ("defences",)))
    for name in SAMPLER_FLAGS + SAMPLER_SWITCHES:
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    if args.defence:
        settings["defences"] = [parse_defence(spec) for spec in args.defence]
    return settings


def parse_defence(spec: str) -> dict:
    """'eos-monitor:threshold=0.6,reduce=max' -> {name: eos-monitor, threshold: 0.6, reduce: max}
    (values read as YAML); the defence checks its own options."""
    name, _, options = spec.partition(":")
    defence = {"name": name.strip()}
    for option in filter(None, options.split(",")):
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise MosaError(f"--defence {spec!r} must look like NAME or NAME:OPTION=VALUE,..., e.g. eos-monitor:threshold=0.6")
        defence[key.strip()] = parse_yaml(value, f"--defence {spec!r}: the value of {key.strip()}")
    return defence


def read_yaml_settings(path: Path, allowed: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise MosaError(f"--config {path}: no such file")
    settings = parse_yaml(path.read_text(), f"--config {path}") or {}
    if not isinstance(settings, dict):
        raise MosaError(f"--config {path} must hold a mapping of settings, not {type(settings).__name__}")
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise MosaError(f"--config {path}: unknown settings {unknown}; known: {sorted(allowed)}")
    return settings


def parse_prefill(specs: list[str] | None, gen_length: int) -> dict[int, str]:
    """['40:The next step is', ...] -> {40: 'The next step is'}; every position inside the response."""
    prefill = {}
    for spec in specs or []:
        position, sep, text = spec.partition(":")
        if not sep or not text or not position.strip().lstrip("-").isdigit():
            raise MosaError(f"--prefill {spec!r} must look like POSITION:TEXT, e.g. 40:The next step is")
        if int(position) < 0:
            raise MosaError(f"--prefill {spec!r}: position must be >= 0 (response positions count from 0)")
        if int(position) >= gen_length:
            raise MosaError(f"--prefill {spec!r}: position must be below gen_length={gen_length}")
        prefill[int(position)] = text
    return prefill
