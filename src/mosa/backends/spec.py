"""Building a backend from a configuration: a dict (from YAML), a short string, or a ready object.

{"type": "openai", "model": M, "base_url": URL, ...}   any option of OpenAIChat
{"type": "transformers", "path": P, ...}              any option of TransformersChat
"openai:MODEL@URL"   "openai:MODEL" (OpenAI's own URL)   "transformers:PATH"   "smollm2"

A string takes further options after a "?", as in a URL's query: "openai:MODEL@URL?timeout=1200&retries=8",
"smollm2?device=cuda". Each value is read as the type of the option's default (a number, true/false).
"""

from __future__ import annotations

import inspect
import re
from urllib.parse import parse_qsl

from mosa.backends.base import BACKENDS, ChatBackend
from mosa.errors import MosaError

# The URL starts at the first "@" followed by a scheme, so model names may hold "@" and URLs "@" too.
_OPENAI_STRING = re.compile(r"^(?P<model>.+?)(?:@(?P<base_url>https?://.+))?$")
# For each string form "TYPE:REST", the option that REST fills.
_STRING_OPTION = {"transformers": "path"}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def make_backend(spec) -> ChatBackend:
    """A backend from `spec` (see the module docstring); an object that already has `chat_many` is returned as it is."""
    if hasattr(spec, "chat_many") and hasattr(spec, "name"):
        return spec
    if isinstance(spec, str):
        kind, options = _parse_string(spec)
    elif isinstance(spec, dict):
        options = dict(spec)
        kind = options.pop("type", None)
        if not isinstance(kind, str):
            raise MosaError(f"backend {spec!r} needs a type; one of: {', '.join(BACKENDS.names())}")
    else:
        raise MosaError(f"a backend is a string like openai:MODEL@URL or a mapping with a type, not {type(spec).__name__}")
    return BACKENDS.build(kind, options, example="openai:MODEL@URL or transformers:PATH")


def _parse_string(spec: str) -> tuple[str, dict]:
    head, _, query = spec.strip().partition("?")
    kind, colon, rest = head.partition(":")
    if not colon:
        options = {}
    elif not rest:
        raise MosaError(f"backend {spec!r} is missing what follows {kind + ':'!r}; e.g. openai:MODEL@URL or transformers:PATH")
    elif kind == "openai":
        match = _OPENAI_STRING.match(rest)
        options = {key: value for key, value in match.groupdict().items() if value}
    elif kind in _STRING_OPTION:
        options = {_STRING_OPTION[kind]: rest}
    else:
        BACKENDS.get(kind)  # an unknown type: the error lists the known ones
        raise MosaError(f"backend {kind!r} takes no value after ':' in a string; write {kind!r} or a mapping with its options")
    return kind, {**options, **_query_options(kind, query)}


def _query_options(kind: str, query: str) -> dict:
    """`timeout=1200&retries=8` as options of backend `kind`, each value read as the type of the
    option's default. An unknown option is left for the registry to refuse, listing the known ones."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise MosaError(f"backend options {query!r} are not of the form name=value&name=value") from None
    defaults = {name: parameter.default for name, parameter in inspect.signature(BACKENDS.get(kind)).parameters.items()}
    return {name: _typed(kind, name, text, defaults.get(name)) for name, text in pairs}


def _typed(kind: str, name: str, text: str, default):
    if isinstance(default, bool):
        if text.lower() not in _BOOLEANS:
            raise MosaError(f"backend {kind!r}: option {name} must be true or false, not {text!r}")
        return _BOOLEANS[text.lower()]
    if isinstance(default, int | float):
        try:
            return type(default)(text)
        except ValueError:
            number = "a whole number" if isinstance(default, int) else "a number"
            raise MosaError(f"backend {kind!r}: option {name} must be {number}, not {text!r}") from None
    return text
