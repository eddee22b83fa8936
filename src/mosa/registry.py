"""Plug-ins found by name: remasking rules, attacks, judges, LLM backends.

    ATTACKS = Registry("attack")
    @ATTACKS.register("none")
    class NoAttack: ...
    ATTACKS.get("none")      # unknown names raise MosaError listing the known ones
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from mosa.errors import MosaError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self._entries:
                raise MosaError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise MosaError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
