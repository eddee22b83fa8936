"""What every chat backend offers, and the registry that finds backends by name."""

from typing import Protocol

from mosa.errors import MosaError
from mosa.registry import Registry

Messages = list[dict[str, str]]


class Answer(str):
    """A chat answer: its text, and whether the backend stopped it at `max_tokens` (`truncated`),
    which a caller parsing the answer needs to tell a cut-off answer from a malformed one."""

    truncated: bool

    def __new__(cls, text: str, *, truncated: bool = False):
        answer = super().__new__(cls, text)
        answer.truncated = truncated
        return answer


class RequestRejected(MosaError):
    """The server refused this one request (an HTTP 4xx such as a prompt longer than its context)
    while the endpoint itself works: the caller may record it and go on with the other requests."""


class ChatBackend(Protocol):
    name: str

    def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0) -> str: ...

    def chat_many(self, conversations: list[Messages], *, max_tokens: int = 512, temperature: float = 0.0) -> list[str]: ...


def chat_each(
    backend: ChatBackend, conversations: list[Messages], *, max_tokens: int = 512, temperature: float = 0.0
) -> list[Answer | RequestRejected]:
    """Every conversation's answer from `backend`, or in its place the `RequestRejected` of a request
    its server rejected alone; a failed endpoint still raises. A backend that can reject a single
    request (the OpenAI client) has a `chat_each` of its own; any other (a local model) rejects
    none, and answers through `chat_many`."""
    if hasattr(backend, "chat_each"):
        return backend.chat_each(conversations, max_tokens=max_tokens, temperature=temperature)
    return backend.chat_many(conversations, max_tokens=max_tokens, temperature=temperature)


BACKENDS: Registry = Registry("backend")
