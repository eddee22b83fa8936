"""Checks for attack options as YAML gives them (plain Python values), each failing with one line
that names the attack, the option and what it must be."""

from __future__ import annotations

from collections.abc import Mapping

from mosa.errors import MosaError


def _refuse(attack: str, name: str, value, requirement: str) -> MosaError:
    return MosaError(f"attack {attack}: option {name}={value!r} must be {requirement}")


def integer(attack: str, name: str, value, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _refuse(attack, name, value, f"an integer >= {minimum}")
    return value


def integers(attack: str, name: str, value, minimum: int = 0) -> list[int]:
    """An integer or a non-empty list of them, as a list."""
    values = value if isinstance(value, list) else [value]
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in values):
        raise _refuse(attack, name, value, f"an integer >= {minimum} or a non-empty list of them")
    return values


def text(attack: str, name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _refuse(attack, name, value, "a non-empty string")
    return value


def texts(attack: str, name: str, value) -> list[str]:
    if not isinstance(value, list) or not value or any(not isinstance(v, str) or not v.strip() for v in value):
        raise _refuse(attack, name, value, "a non-empty list of non-empty strings")
    return value


def named_or_listed(attack: str, name: str, value, named: Mapping[str, object]):
    """A name from `named` (returns its entry) or a list of strings given inline (returned as is)."""
    if isinstance(value, str):
        if value not in named:
            raise _refuse(attack, name, value, f"one of {', '.join(sorted(named))} or a list")
        return named[value]
    return texts(attack, name, value)


def template(attack: str, name: str, value, fields: tuple[str, ...]) -> str:
    """A string whose only {placeholders} are `fields`; checked by filling it once."""
    text(attack, name, value)
    try:
        value.format(**dict.fromkeys(fields, ""))
    except (KeyError, IndexError, ValueError):
        raise _refuse(
            attack, name, value, f"a string whose only placeholders are {', '.join('{' + f + '}' for f in fields)}"
        ) from None
    return value


def position(attack: str, name: str, value) -> int | float:
    """A response position: an integer token index, or a float in [0, 1), a fraction of gen_length
    (resolved against the target's sampler by `resolve_position`)."""
    if isinstance(value, float) and 0 <= value < 1 or isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _refuse(attack, name, value, "an integer token index >= 0 or a fraction in [0, 1) of the response length")


def resolve_position(value: int | float, gen_length: int) -> int:
    return int(value * gen_length) if isinstance(value, float) else value


def boolean(attack: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise _refuse(attack, name, value, "true or false")
    return value


def window(attack: str, name: str, value) -> tuple[int, int] | None:
    """A response window [start, end) as a two-item list (the paper's Table 4: [20, 60]), or None."""
    if value is None:
        return None
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 0 <= value[0] < value[1]
    ):
        return int(value[0]), int(value[1])
    raise _refuse(attack, name, value, "a response window [start, end) with 0 <= start < end, e.g. [20, 60]")
