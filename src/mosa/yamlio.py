"""YAML as users write it (config files, `--set KEY=VALUE` values), with errors in one line that
say where: `--config run.yaml is not valid YAML: mapping values are not allowed here (line 3, column 5)`."""

from __future__ import annotations

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
