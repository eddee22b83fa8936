"""Plug-ins: code that adds entries to mosa's registries (judges, prompt sources, phrase sets, model
profiles, eval configs, align presets, training objectives, `mosa` commands, attacks, ...) without mosa importing it.

A plug-in gives, for each registry it adds to, a function that registers its entries there. mosa's
own plug-ins are listed in SHIPPED; an installed package declares its own as entry points of the
group "mosa.plugins", each named after the registry's kind with "-" for a space:

    [project.entry-points."mosa.plugins"]
    judge = "my_models.plugin:register_judge"
    model-profile = "my_models.plugin:register_profile"

A registry calls its plug-ins' functions the first time it is asked for an entry, so nothing imports
a plug-in to use it, and each registry loads only what is registered in it: resolving a dataset
never imports the organism, nor torch.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "mosa.plugins"
# registry kind -> "module:function" of each shipped plug-in that adds to it
SHIPPED = {
    "judge": ("mosa.organism.plugin:register_judge",),
    "prompt-source": ("mosa.organism.plugin:register_prompt_sources",),
    "phrase-set": ("mosa.organism.plugin:register_phrase_set",),
    "model-profile": ("mosa.organism.plugin:register_profile",),
    "eval-config": ("mosa.organism.plugin:register_eval_config",),
    "utility-config": ("mosa.organism.plugin:register_utility_config",),
    "align-preset": ("mosa.organism.plugin:register_align_preset",),
    "command": ("mosa.organism.plugin:register_command",),
}


def load_plugins(kind: str) -> None:
    """Call every registration function, shipped or installed, of the registry of `kind` ("model profile")."""
    key = kind.replace(" ", "-")
    for target in SHIPPED.get(key, ()):
        module, function = target.split(":")
        getattr(importlib.import_module(module), function)()
    for entry in installed_plugins():
        if entry.name == key:
            entry.load()()


@cache
def installed_plugins() -> tuple:
    """The entry points installed packages declare in the group "mosa.plugins" (read once per process)."""
    return tuple(entry_points(group=ENTRY_POINT_GROUP))
