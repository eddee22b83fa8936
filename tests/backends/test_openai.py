"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1."""

import socket
import time

import pytest

from mosa.backends import BACKENDS, OpenAIChat, make_backend
from mosa.errors import MosaError
from tests.chat_server import ChatServer, Reply

HELLO = [{"role": "user", "content": "hello"}]


def scripted(*replies):
    """A reply function giving `replies` in order, then "done" for every later request."""
    queue = list(replies)
    return lambda request: queue.pop(0) if queue else "done"


def client(server, tmp_path, **options):
    return OpenAIChat("test-model", server.url, cache_dir=tmp_path / "cache", backoff=0.01, **options)


def test_a_chat_completion_round_trip(tmp_path):
    with ChatServer(lambda request: "hi there") as server:
        answer = client(server, tmp_path).chat(HELLO, max_tokens=7, temperature=0.0)
    assert answer == "hi there"
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert (request["model"], request["messages"], request["max_tokens"], request["temperature"]) == ("test-model", HELLO, 7, 0.0)


def test_429_and_503_are_retried_until_success(tmp_path):
    with ChatServer(scripted(Reply("slow down", 429), Reply("busy", 503), "finally")) as server:
        assert client(server, tmp_path).chat(HELLO) == "finally"
    assert len(server.requests) == 3


def test_retries_stop_after_max_retries(tmp_path):
    with ChatServer(lambda request: Reply("busy", 503)) as server:
        with pytest.raises(MosaError, match=r"HTTP 503 after 3 tries") as error:
            client(server, tmp_path, max_retries=2).chat(HELLO)
    assert len(server.requests) == 3
    assert server.url in str(error.value)


def test_other_4xx_fail_at_once(tmp_path):
    with ChatServer(lambda request: Reply("max_tokens too large", 400)) as server:
        with pytest.raises(MosaError, match=r"HTTP 400: .*max_tokens too large"):
            client(server, tmp_path).chat(HELLO)
    assert len(server.requests) == 1


def test_retry_after_is_honoured_and_capped(tmp_path):
    with ChatServer(scripted(Reply("wait", 429, {"Retry-After": "1"}))) as server:
        start = time.monotonic()
        client(server, tmp_path).chat(HELLO)
        assert time.monotonic() - start >= 0.95  # the 0.01 s backoff alone would be far shorter
    with ChatServer(scripted(Reply("wait", 429, {"Retry-After": "3600"}))) as server:
        start = time.monotonic()
        client(server, tmp_path, max_wait=0.2).chat(HELLO)
        assert time.monotonic() - start < 5
    assert len(server.requests) == 2


def test_timeouts_are_retried_then_reported(tmp_path):
    with ChatServer(lambda request: Reply("late", delay=1.0)) as server:
        with pytest.raises(MosaError, match=r"did not answer within 0.2s after 2 tries"):
            client(server, tmp_path, timeout=0.2, max_retries=1).chat(HELLO)
    assert len(server.requests) == 2


def test_chat_many_keeps_order_and_the_concurrency_limit(tmp_path):
    with ChatServer(lambda request: Reply(request["messages"][0]["content"].upper(), delay=0.15)) as server:
        conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(9)]
        answers = client(server, tmp_path, concurrency=3, cache=False).chat_many(conversations)
    assert answers == [f"Q{i}" for i in range(9)]
    assert server.max_in_flight == 3


def test_identical_greedy_requests_come_from_the_cache(tmp_path):
    with ChatServer(lambda request: f"answer {len(server.requests)}") as server:
        backend = client(server, tmp_path)
        first = backend.chat(HELLO, max_tokens=5)
        assert client(server, tmp_path).chat(HELLO, max_tokens=5) == first  # a new client, the same disk cache
        assert len(server.requests) == 1
        backend.chat(HELLO, max_tokens=6)  # a different request
        assert len(server.requests) == 2
        sampled = [backend.chat(HELLO, temperature=0.7) for _ in range(2)]  # samples are meant to differ
        assert len(server.requests) == 4 and sampled[0] != sampled[1]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2


def test_the_key_goes_in_the_header_and_nowhere_else(tmp_path, monkeypatch):
    secret = "sk-test-do-not-leak-1234"
    monkeypatch.setenv("MOSA_TEST_KEY", secret)
    echo_headers = lambda request: Reply(f"you sent {request['headers']}", 400)  # noqa: E731 - a server that echoes requests
    with ChatServer(echo_headers) as server:
        backend = client(server, tmp_path, api_key_env="MOSA_TEST_KEY")
        with pytest.raises(MosaError) as error:
            backend.chat(HELLO)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {secret}"
    assert "HTTP 400" in str(error.value)
    for text in (backend.name, repr(backend), str(error.value)):
        assert secret not in text


def test_a_refused_key_names_the_variable_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("MOSA_TEST_KEY", raising=False)
    with ChatServer(lambda request: Reply("unauthorized", 401)) as server:
        with pytest.raises(MosaError, match=r"\$MOSA_TEST_KEY is not set"):
            client(server, tmp_path, api_key_env="MOSA_TEST_KEY").chat(HELLO)
    assert "Authorization" not in server.requests[0]["headers"]


def test_a_down_endpoint_fails_fast_with_its_url(tmp_path):
    with socket.socket() as probe:  # a free port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    backend = OpenAIChat("m", url, cache_dir=tmp_path, backoff=1.0)
    start = time.monotonic()
    with pytest.raises(
        MosaError, match=r"cannot reach http://127.0.0.1:\d+/v1/chat/completions .*start the server or fix base_url"
    ):
        backend.chat_many([HELLO, HELLO, HELLO])
    assert time.monotonic() - start < 1.0  # no backoff: a retry would have waited at least 0.5 s


def test_make_backend_reads_strings_and_mappings(tmp_path):
    from_string = make_backend("openai:org/model@v2@http://127.0.0.1:9/v1")
    assert (from_string.model, from_string.base_url) == ("org/model@v2", "http://127.0.0.1:9/v1")
    assert from_string.name == "openai:org/model@v2@http://127.0.0.1:9/v1"
    assert make_backend("openai:gpt-4o-mini").base_url == "https://api.openai.com/v1"
    from_mapping = make_backend({"type": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "concurrency": 2})
    assert from_mapping.concurrency == 2
    assert make_backend(from_mapping) is from_mapping
    assert {"openai", "transformers", "smollm2"} <= set(BACKENDS.names())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nope:x", r"unknown backend 'nope'; available: openai, smollm2, transformers"),
        ({"model": "m"}, r"needs a type"),
        ({"type": "openai"}, r"backend 'openai' needs model"),
        ({"type": "openai", "model": "m", "api_key": "sk-1"}, r"no option api_key; its options: model, base_url, api_key_env"),
        ("openai:", r"missing what follows 'openai:'"),
        ("smollm2:big", r"takes no value after ':'"),
        ({"type": "openai", "model": "m", "base_url": "127.0.0.1:8000"}, r"must start with http:// or https://"),
        ({"type": "openai", "model": "m", "concurrency": 0}, r"concurrency 0 must be a whole number >= 1"),
        (42, r"not int"),
    ],
)
def test_bad_backend_specs_are_one_line_errors(spec, message):
    with pytest.raises(MosaError, match=message) as error:
        make_backend(spec)
    assert "\n" not in str(error.value)
