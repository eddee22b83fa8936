"""Plug-ins found by name: attacks, judges, LLM backends, prompt sources, phrase sets, model profiles.

    ATTACKS = Registry("attack")
    @ATTACKS.register("none")
    class NoAttack: ...
    PHRASE_SETS.add("paper", (AFFIRMATIVE, PROCEDURAL))
    ATTACKS.get("none")      # unknown names raise MosaError listing the known ones

A registry is first read after the plug-ins (mosa.plugins) have added their entries to it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

from mosa.errors import MosaError
from mosa.plugins import load_plugins

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that adds what it decorates (a class or a function) under `name`."""

        def decorator(entry: T) -> T:
            self.add(name, entry)
            return entry

        return decorator

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise MosaError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        if name not in self:
            raise MosaError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self.entries())

    def __contains__(self, name: str) -> bool:
        return name in self.entries()

    def entries(self) -> dict[str, T]:
        """Every entry by name, the plug-ins' included: they are loaded on the first read."""
        if not self._plugins_loaded:
            self._plugins_loaded = True  # first: a plug-in may read the registry it adds to
            load_plugins(self.kind)
        return dict(self._entries)

    def build(self, name: str, options: dict, *, example: str = ""):
        """The entry `name` called with `options`, after checking them against its signature, so a
        misspelt or missing option is a one-line MosaError listing the options it takes."""
        factory = self.get(name)
        parameters = {
            key: p for key, p in inspect.signature(factory).parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        unknown = sorted(set(options) - set(parameters))
        if unknown:
            takes = f"its options: {', '.join(parameters)}" if parameters else "it takes none; give its bare name"
            raise MosaError(f"{self.kind} {name!r} has no option {', '.join(unknown)}; {takes}")
        missing = [key for key, p in parameters.items() if p.default is p.empty and key not in options]
        if missing:
            raise MosaError(f"{self.kind} {name!r} needs {', '.join(missing)}" + (f"; e.g. {example}" if example else ""))
        return factory(**options)
