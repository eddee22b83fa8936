"""YAML as users write it (config files, `--set KEY=VALUE` values), with errors in one line that
say where: `--config run.yaml is not valid YAML: mapping values are not allowed here (line 3, column 5)`."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import yaml

from mosa.errors import MosaError


def parse_yaml(text: str, what: str):
    """The value `text` holds; `what` names it in the error, e.g. "--config run.yaml"."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MosaError(f"{what} is not valid YAML: {yaml_problem(error)}") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem, and its line and column counted from 1."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return problem if mark is None else f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def read_settings_file(source: str | Path, shipped) -> dict:
    """The settings of a shipped config (a name in the registry `shipped`) or of a YAML file."""
    path = Path(source)
    if str(source) in shipped and not path.suffix:
        text = shipped.get(str(source)).read_text()
    elif path.is_file():
        text = path.read_text()
    else:
        raise MosaError(f"--config {source}: no such file, and not a shipped config ({', '.join(shipped.names())})")
    settings = parse_yaml(text, f"--config {source}") or {}
    if not isinstance(settings, dict):
        raise MosaError(f"--config {source} must hold a mapping of settings, not {type(settings).__name__}")
    return settings


def apply_override(settings: dict, assignment: str, known: Sequence[str], example: str) -> None:
    """`--set KEY=VALUE` with a YAML value; a dotted key (sampler.steps=64) reaches into a mapping.
    `known`: the top-level settings; `example`: what a well-formed assignment looks like."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise MosaError(f"--set {assignment!r} must look like KEY=VALUE, e.g. {example}")
    *parents, leaf = key.strip().split(".")
    if (parents or [leaf])[0] not in known:  # named here: the config it lands in would take the blame
        raise MosaError(f"--set {key.strip()}: unknown setting {(parents or [leaf])[0]!r}; known: {', '.join(known)}")
    node = settings
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise MosaError(f"--set {assignment!r}: {part} is not a mapping of settings")
    node[leaf] = parse_yaml(value, f"--set {assignment!r}: the value")


def layered_settings(
    source: str | Path | None,
    base: dict | None,
    overrides: Sequence[str],
    shipped,
    known: Sequence[str],
    example: str,
    *,
    model: str | None = None,
    adapter: str | None = None,
) -> tuple[dict, str]:
    """A run's settings, each layer over the one before: a shipped config (a name in the registry
    `shipped`) or a YAML file (`source`), else `base` (a run's own config.json, when resuming without
    --config); then each `--set KEY=VALUE` (apply_override: `known`, `example`); then --model and
    --adapter. Returns the settings and where they came from, for the checks' messages."""
    if source is not None:
        settings, where = read_settings_file(source, shipped), f"--config {source}"
    elif base is not None:
        settings, where = copy.deepcopy(base), "the run's config.json"  # an override never writes into `base`
    else:
        raise MosaError(f"no config given; pass --config FILE or a shipped config ({', '.join(shipped.names())})")
    for assignment in overrides:
        apply_override(settings, assignment, known, example)
    if model is not None:
        settings["model"] = model
    if adapter is not None:
        settings["adapter"] = adapter
    return settings, where
