"""Plug-ins reach mosa through its registries, loaded the first time a registry is read: the organism's
entries are there without importing it, an installed package's entry points add theirs the same way,
and resolving a dataset never loads the organism, nor torch."""

import os
import subprocess
import sys
from importlib.metadata import EntryPoint

from mosa import plugins
from mosa.attacks.phrases import PHRASE_SETS
from mosa.cli import COMMANDS
from mosa.data import PROMPT_SOURCES
from mosa.judges import JUDGES
from mosa.profiles import find_profile, model_path
from mosa.registry import Registry

GADGETS = Registry("gadget")  # the registry of an installed plug-in's entry point, below


def register_gadget():
    GADGETS.add("sprocket", object())


def test_the_organism_registers_its_entries_in_each_registry():
    assert "organism" in JUDGES and "organism" in PHRASE_SETS and "organism" in COMMANDS
    assert {"organism-train", "organism-held-out", "organism-utility"} <= set(PROMPT_SOURCES.names())
    assert find_profile("organism").name == "organism" and model_path("organism").endswith("organism/shipped")
    assert (
        find_profile("GSAI-ML/LLaDA-8B-Instruct") is None
        and model_path("GSAI-ML/LLaDA-8B-Instruct") == "GSAI-ML/LLaDA-8B-Instruct"
    )


def test_an_installed_package_adds_to_a_registry_through_its_entry_point(monkeypatch):
    entry = EntryPoint(name="gadget", value=f"{__name__}:register_gadget", group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "installed_plugins", lambda: (entry,))
    assert GADGETS.names() == ["sprocket"]


def test_resolving_a_dataset_loads_neither_the_organism_nor_torch():
    code = (
        "import sys; from mosa.data import resolve_prompts; resolve_prompts('advbench'); "
        "print(sorted(name for name in sys.modules if name == 'torch' or name.startswith('mosa.organism.')))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ).stdout
    assert found.strip() == "['mosa.organism.plugin']"  # the plug-in's registrations, which import nothing heavy
