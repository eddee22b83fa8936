"""What every chat backend offers, and the registry that finds backends by name."""

from typing import Protocol

from mosa.registry import Registry

Messages = list[dict[str, str]]


class ChatBackend(Protocol):
    name: str

    def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0) -> str: ...

    def chat_many(self, conversations: list[Messages], *, max_tokens: int = 512, temperature: float = 0.0) -> list[str]: ...


BACKENDS: Registry = Registry("backend")
