"""Every third-party library the package imports is declared in pyproject.toml."""

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"yaml": "pyyaml"}


def imported_libraries() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "mosa").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "mosa"}


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {requirement.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for requirement in requirements}


def test_every_imported_library_is_declared():
    missing = {DISTRIBUTIONS.get(name, name) for name in imported_libraries()} - declared_distributions()
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
