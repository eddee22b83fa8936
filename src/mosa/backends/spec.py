"""Building a backend from a configuration: a dict (from YAML), a short string, or a ready object.

{"type": "openai", "model": M, "base_url": URL, ...}   any option of OpenAIChat
{"type": "transformers", "path": P, ...}              any option of TransformersChat
"openai:MODEL@URL"   "openai:MODEL" (OpenAI's own URL)   "transformers:PATH"   "smollm2"
"""

from __future__ import annotations

import re

from mosa.backends.base import BACKENDS, ChatBackend
from mosa.errors import MosaError

# The URL starts at the first "@" followed by a scheme, so model names may hold "@" and URLs "@" too.
_OPENAI_STRING = re.compile(r"^(?P<model>.+?)(?:@(?P<base_url>https?://.+))?$")
# For each string form "TYPE:REST", the option that REST fills.
_STRING_OPTION = {"transformers": "path"}


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
    kind, colon, rest = spec.strip().partition(":")
    if not colon:
        return kind, {}
    if not rest:
        raise MosaError(f"backend {spec!r} is missing what follows {kind + ':'!r}; e.g. openai:MODEL@URL or transformers:PATH")
    if kind == "openai":
        match = _OPENAI_STRING.match(rest)
        return kind, {key: value for key, value in match.groupdict().items() if value}
    if kind in _STRING_OPTION:
        return kind, {_STRING_OPTION[kind]: rest}
    BACKENDS.get(kind)  # an unknown type: the error lists the known ones
    raise MosaError(f"backend {kind!r} takes no value after ':' in a string; write {kind!r} or a mapping with its options")
