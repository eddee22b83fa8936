"""LLM backends for attackers and judges: anything that answers a chat.

A backend is any object with

    name: str                                   # recorded with every verdict, never holds a key
    chat(messages, *, max_tokens=512, temperature=0.0) -> str
    chat_many(conversations, *, max_tokens=512, temperature=0.0) -> list[str]

where `messages` is a list of {"role": ..., "content": ...}.
"""

from typing import Protocol

from mosa.registry import Registry

Messages = list[dict[str, str]]


class ChatBackend(Protocol):
    name: str

    def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0) -> str: ...

    def chat_many(self, conversations: list[Messages], *, max_tokens: int = 512, temperature: float = 0.0) -> list[str]: ...


BACKENDS: Registry = Registry("backend")

__all__ = ["BACKENDS", "ChatBackend", "Messages"]
