"""A client for OpenAI-compatible `/v1/chat/completions` endpoints (OpenAI, vLLM, llama.cpp's server,
LiteLLM, ...), written with the standard library only.

The rules it keeps:

- The API key comes from an environment variable (`api_key_env`, default OPENAI_API_KEY) and is sent
  only as a Bearer header. It is never part of `name`, the repr, an error message or the cache. When
  the variable is unset no Authorization header is sent (local servers need none); a server that
  then answers 401/403 gets an error naming the variable to set.
- What may pass is retried up to `retries` times: 429, 5xx, no answer within `timeout`, a refused,
  reset or dropped connection, an answer cut off mid-way. Each retry waits `backoff * 2**attempt`
  seconds with jitter, or what the server's Retry-After asks for, never longer than `max_wait`, and
  says so in one line on stderr, since a request that timed out may be generated twice.
- What will not pass fails at once: 401/403 (the key), 404 (the URL or model), an unknown host.
  Any other 4xx rejects this one request (a prompt longer than the server's context) and raises
  `RequestRejected`, so that a caller can record it and go on with the others.
- An answer stopped at `max_tokens` (finish_reason "length") comes back as an `Answer` with
  `truncated` set.
- The default `timeout` is long (600 s) because a server on CPU may queue a request for minutes
  before it starts on it, and a request that times out is sent again while the server may still be
  generating it.
- `chat_many` keeps at most `concurrency` requests in flight for this backend; `chat_each` does the
  same and gives a rejected request's `RequestRejected` in place of its answer.
- Identical greedy requests (temperature 0) are answered from an on-disk cache. Sampled requests
  are never cached: asking twice is how a caller gets two different samples (TAP's branching).

`request(path, body)` and `request_each(path, bodies)` send any other request to the same API root
under the same rules (no cache): what a client of a server's own extensions needs, such as mosa
eval's target on a `mosa serve` endpoint (mosa.attacks.served).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path

from mosa.backends.base import BACKENDS, Answer, Messages, RequestRejected
from mosa.errors import MosaError
from mosa.paths import cache_dir as mosa_cache_dir
from mosa.paths import write_atomically
from mosa.progress import note

# What to do when a failure outlasts the retries.
SERVER_DOWN = "start the server or fix base_url"
SERVER_STRUGGLING = (
    "the server is overloaded or failing: try again later, lower concurrency, or raise timeout and retries "
    "(e.g. openai:MODEL@URL?timeout=1200&retries=8)"
)


def _is_retried(status: int) -> bool:
    return status == 429 or status >= 500


@BACKENDS.register("openai")
class OpenAIChat:
    """Chat completions over HTTP. `base_url` is the API root, usually ending in /v1."""

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        concurrency: int = 8,
        cache: bool = True,
        cache_dir: str | Path | None = None,
    ):
        if not isinstance(model, str) or not model:
            raise MosaError("openai backend: model must be a non-empty model name, e.g. model: gpt-4o-mini")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise MosaError(
                f"openai backend: base_url {base_url!r} must start with http:// or https://, e.g. http://127.0.0.1:8000/v1"
            )
        if not timeout > 0 or retries < 0 or backoff < 0 or max_wait < 0:
            raise MosaError("openai backend: timeout must be > 0 and retries, backoff, max_wait >= 0")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise MosaError(f"openai backend: concurrency {concurrency!r} must be a whole number >= 1")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.name = f"openai:{model}@{self.base_url}"
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None
        self.timeout, self.retries, self.backoff, self.max_wait = float(timeout), int(retries), float(backoff), float(max_wait)
        self.concurrency = concurrency
        self.cache = bool(cache)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else mosa_cache_dir() / "chat"
        self._in_flight = threading.BoundedSemaphore(concurrency)

    def __repr__(self) -> str:
        return f"OpenAIChat({self.name!r})"

    def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0) -> Answer:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        cache_file = self._cache_file(body) if self.cache and temperature == 0 else None
        if cache_file is not None:
            cached = _read_cached(cache_file)
            if cached is not None:
                return cached
        answer = self._answer(self._send(self.url, body))
        if cache_file is not None:
            write_atomically(cache_file, json.dumps({"content": answer, "truncated": answer.truncated}, ensure_ascii=False))
        return answer

    def chat_many(self, conversations: list[Messages], *, max_tokens: int = 512, temperature: float = 0.0) -> list[Answer]:
        """Answers in the order of `conversations`. A request rejected alone raises its
        `RequestRejected` once every request has been answered (so that the greedy answers are
        cached for the next call); use `chat_each` to keep the other answers."""
        answers = self.chat_each(conversations, max_tokens=max_tokens, temperature=temperature)
        rejection = next((answer for answer in answers if isinstance(answer, RequestRejected)), None)
        if rejection is not None:
            raise rejection
        return answers

    def chat_each(
        self, conversations: list[Messages], *, max_tokens: int = 512, temperature: float = 0.0
    ) -> list[Answer | RequestRejected]:
        """Answers in the order of `conversations`, with the `RequestRejected` of a request the server
        rejected alone in its place, so that a caller asks once and keeps every other answer (a
        sampled answer cannot be asked for again). A failed endpoint raises, and cancels the
        requests not yet sent (those in flight finish, so their greedy answers are cached)."""
        return self._each(
            lambda messages: _or_rejection(self.chat, messages, max_tokens=max_tokens, temperature=temperature), conversations
        )

    def request(self, path: str, body: dict | None = None) -> dict:
        """GET base_url/path (no `body`) or POST `body` there as JSON, retried and refused as a chat
        request is; the answer's JSON. Never cached."""
        url = f"{self.base_url}/{path}"
        payload = self._send(url, body)
        try:
            return json.loads(payload)
        except ValueError:
            raise MosaError(
                f"{url} answered something that is not JSON ({self._excerpt(payload)}); "
                "check that base_url points at the API root (usually ending in /v1)"
            ) from None

    def request_each(self, path: str, bodies: list[dict]) -> list[dict | RequestRejected]:
        """`request` for each body, at most `concurrency` in flight, answers in order, with the
        `RequestRejected` of a request the server rejected alone in its place (as `chat_each`)."""
        return self._each(lambda body: _or_rejection(self.request, path, body), bodies)

    def _each(self, call, items: list) -> list:
        """call(item) for every item, at most `concurrency` at once, results in order. A failure other
        than a rejection raises, and cancels the calls not yet started (those in flight finish)."""
        if not items:
            return []
        executor = ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="mosa-chat")
        try:
            futures = [executor.submit(call, item) for item in items]
            return [future.result() for future in futures]
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _cache_file(self, body: dict) -> Path:
        request = {"url": self.url, **body}
        key = hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"

    def _send(self, url: str, body: dict | None) -> bytes:
        """The answer's body to a POST of `body` as JSON (a GET when None), with the retries above."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        tries = self.retries + 1
        for attempt in range(tries):
            retry_after = None
            try:
                with self._in_flight:
                    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
                    with urllib.request.urlopen(request, timeout=self.timeout) as response:
                        return response.read()
            except urllib.error.HTTPError as error:
                if not _is_retried(error.code):
                    raise self._rejection(url, error.code, _body_of(error)) from None
                failure, fix = f"answered HTTP {error.code}", SERVER_STRUGGLING
                retry_after = error.headers.get("Retry-After")
            except (OSError, http.client.HTTPException) as error:  # urllib's URLError is an OSError
                failure, fix = self._transient_failure(url, error)
            if attempt + 1 < tries:
                wait = self._wait(attempt, retry_after)
                note(f"{self.name}: {failure}; retry {attempt + 1} of {self.retries} in {wait:.1f}s")
                time.sleep(wait)
        raise MosaError(f"{url} {failure} after {tries} tries; {fix}")

    def _transient_failure(self, url: str, error: Exception) -> tuple[str, str]:
        """What went wrong, and the fix should it outlast the retries, for a failure that another try
        may get past; any other (an unknown host, a bad certificate) raises at once."""
        reason = error.reason if isinstance(error, urllib.error.URLError) else error  # urllib wraps errors while sending
        if isinstance(reason, TimeoutError):
            return f"did not answer within {self.timeout:g}s", SERVER_STRUGGLING
        if isinstance(reason, ConnectionRefusedError):
            return "refused the connection", SERVER_DOWN
        if isinstance(reason, ConnectionError):  # reset, aborted, a broken pipe, closed before answering
            return "dropped the connection", SERVER_STRUGGLING
        if isinstance(reason, http.client.IncompleteRead):
            return "cut its answer off mid-way", SERVER_STRUGGLING
        if isinstance(reason, http.client.HTTPException):
            return f"sent a malformed answer ({type(reason).__name__})", SERVER_STRUGGLING
        raise MosaError(f"cannot reach {url} ({reason}); fix base_url") from None

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        asked = _seconds(retry_after)
        if asked is not None:
            return min(self.max_wait, asked)
        return min(self.max_wait, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)

    def _answer(self, payload: bytes) -> Answer:
        try:
            choice = json.loads(payload)["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise MosaError(
                f"{self.url} answered something that is not a chat completion ({self._excerpt(payload)}); "
                "check that base_url points at an OpenAI-compatible API root (usually ending in /v1)"
            ) from None
        # A null content (e.g. a provider's own refusal) is an empty answer.
        return Answer(message.get("content") or "", truncated=choice.get("finish_reason") == "length")

    def _rejection(self, url: str, status: int, payload: bytes) -> MosaError:
        """The error for a 4xx: 401, 403 and 404 concern every request (the key, the URL, the model)
        and stop the caller; any other rejects this request alone."""
        if status in (401, 403):
            key_state = "is not set" if self._api_key is None else "holds a key the server does not accept"
            return MosaError(
                f"{url} refused the request (HTTP {status}); ${self.api_key_env} {key_state}: set it to a valid API key"
            )
        if status == 404:
            return MosaError(
                f"{url} answered HTTP 404; check base_url (the API root, usually ending in /v1) and model {self.model!r}"
            )
        return RequestRejected(f"{url} rejected the request (HTTP {status}: {self._excerpt(payload)})")

    def _excerpt(self, payload: bytes) -> str:
        """The start of a server's answer, on one line and with the key blanked out (servers echo requests)."""
        text = " ".join(payload[:300].decode("utf-8", errors="replace").split())
        return text.replace(self._api_key, "***") if self._api_key else text


def _or_rejection(call, *args, **kwargs):
    """call's answer, or the `RequestRejected` it raised: one rejected request does not stop the others."""
    try:
        return call(*args, **kwargs)
    except RequestRejected as rejection:
        return rejection


def _body_of(error: urllib.error.HTTPError) -> bytes:
    """An error answer's body, or nothing where the server cut it off: the status says enough."""
    try:
        return error.read()
    except (OSError, http.client.HTTPException):
        return b""


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not retry_after:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _read_cached(path: Path) -> Answer | None:
    try:
        saved = json.loads(path.read_text())
        return Answer(saved["content"], truncated=saved.get("truncated", False))
    except (OSError, ValueError, KeyError, TypeError):  # absent, or damaged by hand: ask the server again
        return None
