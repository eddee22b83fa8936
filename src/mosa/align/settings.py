"""MOSA settings as YAML and the command line give them: a `MosaConfig` from plain values (sentence
sets may be files), and the named presets of `mosa align --preset`. Prompt sets are named by specs
(mosa.data.resolve_prompts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from mosa.errors import MosaError
from mosa.registry import Registry

# `mosa align --preset NAME`: a YAML file each, of mosa's own (the paper's recipe for LLaDA-8B) or a
# plug-in's (the organism's).
ALIGN_PRESETS: Registry[Path] = Registry("align preset")
ALIGN_PRESETS.add("paper-llada8b", Path(__file__).parent / "presets" / "paper-llada8b.yaml")


def read_preset(name: str) -> dict:
    """A preset's run settings (model, prompts, dtype, ...) with the MosaConfig fields under `mosa`."""
    return yaml.safe_load(ALIGN_PRESETS.get(name).read_text())


def mosa_config(settings: dict):
    from mosa.align.trainer import MosaConfig

    fields = {f.name: f for f in dataclasses.fields(MosaConfig)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise MosaError(f"unknown MOSA settings {unknown}; known: {sorted(fields)}")
    for key in ("safe_sentences", "harmful_sentences"):
        if isinstance(settings.get(key), str):
            settings = {**settings, key: read_sentences(key, Path(settings[key]))}
    settings = {key: coerce(key, value, str(fields[key].type)) for key, value in settings.items()}
    return MosaConfig(**settings)


def read_sentences(key: str, path: Path) -> list[str]:
    """A sentence set given as a file: one sentence per line, blank lines and '#' comments skipped."""
    if not path.is_file():
        raise MosaError(f"{key}: {path} is not a file; give a list of sentences or a text file with one per line")
    sentences = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not sentences:
        raise MosaError(f"{key}: {path} holds no sentences; write one per line")
    return sentences


def coerce(key: str, value, annotation: str):
    """YAML reads 1e-4 as text and lists as lists; give each field the type MosaConfig declares."""
    if value is None or annotation.startswith("tuple"):
        return tuple(value) if isinstance(value, list) else value
    for kind in (int, float):
        if annotation.startswith(kind.__name__) or annotation.startswith(f"{kind.__name__} |"):
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise MosaError(f"{key}={value!r} must be {'an integer' if kind is int else 'a number'}") from None
    return value
