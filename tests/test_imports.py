"""No module outside mosa.organism imports it: the organism is a plug-in, which the registries load
(mosa.plugins names it, as text), so the rest of mosa reaches it only through them: its command
through mosa.cli.COMMANDS, the demo through its model profile."""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "mosa"


def imported_modules(source: str, package: str) -> set[str]:
    """Every module that `source`, a module of `package` ("mosa.eval"), imports: in import statements
    anywhere in it, functions included."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join([*(parts[: len(parts) - node.level + 1] if node.level else []), *filter(None, [node.module])])
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)  # `from mosa import organism` imports a module
    return modules


def is_the_organism(module: str) -> bool:
    return module == "mosa.organism" or module.startswith("mosa.organism.")


def imports_the_organism(path: Path) -> bool:
    package = ".".join(["mosa", *path.relative_to(SOURCE).parent.parts])
    return any(map(is_the_organism, imported_modules(path.read_text(), package)))


def test_no_module_outside_the_organism_imports_it():
    outside = [path for path in sorted(SOURCE.rglob("*.py")) if path.relative_to(SOURCE).parts[0] != "organism"]
    offenders = [path.relative_to(SOURCE).as_posix() for path in outside if imports_the_organism(path)]
    assert len(outside) > 50 and offenders == []


@pytest.mark.parametrize(
    "statement",
    [
        "import mosa.organism.build",
        "from mosa.organism.card import FLOORS",
        "from mosa import organism",
        "def late():\n    from mosa.organism import judge",
        "from ..organism import corpus",
        "from .. import organism",
    ],
)
def test_the_check_sees_every_form_of_import(statement):
    assert any(map(is_the_organism, imported_modules(statement, "mosa.eval")))
