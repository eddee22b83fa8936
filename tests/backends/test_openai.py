"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1."""

import threading
import time

import pytest

from mosa.backends import BACKENDS, OpenAIChat, RequestRejected, chat_each, make_backend
from mosa.errors import MosaError
from tests.chat_server import ChatServer, Reply
from tests.conftest import free_port

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


def test_retries_stop_after_the_given_number_and_each_says_why_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MOSA_TEST_KEY", "sk-never-in-a-line")
    with ChatServer(lambda request: Reply("busy", 503)) as server:
        with pytest.raises(MosaError, match=r"HTTP 503 after 3 tries; the server is overloaded") as error:
            client(server, tmp_path, retries=2, api_key_env="MOSA_TEST_KEY").chat(HELLO)
    assert len(server.requests) == 3
    assert server.url in str(error.value)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        f"openai:test-model@{server.url}: answered HTTP 503; retry 1 of 2",
        f"openai:test-model@{server.url}: answered HTTP 503; retry 2 of 2",
    ]
    assert "sk-never-in-a-line" not in "".join(lines)


def test_a_request_the_server_rejects_alone_fails_at_once_as_request_rejected(tmp_path):
    with ChatServer(lambda request: Reply("prompt is longer than the context", 400)) as server:
        with pytest.raises(RequestRejected, match=r"rejected the request \(HTTP 400: .*prompt is longer than the context"):
            client(server, tmp_path).chat(HELLO)
    assert len(server.requests) == 1


def test_chat_each_answers_every_request_once_with_the_rejection_in_its_place(tmp_path):
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(4)]

    def reply(request):
        question = request["messages"][0]["content"]
        return Reply("too long", 400) if question == "q1" else "a" + question

    with ChatServer(reply) as server:
        backend = client(server, tmp_path, concurrency=2)
        first, rejected, *rest = chat_each(backend, conversations, temperature=1.0)  # sampled: asked once, never again
        assert [first, *rest] == ["aq0", "aq2", "aq3"] and isinstance(rejected, RequestRejected)
        assert "HTTP 400: " in str(rejected) and len(server.requests) == 4
        # chat_many raises the rejection only once the others are answered, so greedy ones are cached.
        with pytest.raises(RequestRejected):
            backend.chat_many(conversations)
        assert len(server.requests) == 8
        assert backend.chat_many(conversations[2:]) == ["aq2", "aq3"] and len(server.requests) == 8


def test_chat_each_of_a_backend_without_its_own_is_chat_many():
    class Local:
        name = "local"

        def chat_many(self, conversations, *, max_tokens, temperature):
            return [f"{len(conversations)} at {temperature}"] * len(conversations)

    assert chat_each(Local(), [HELLO, HELLO], temperature=0.5) == ["2 at 0.5", "2 at 0.5"]


@pytest.mark.parametrize("status, message", [(401, r"\$OPENAI_API_KEY"), (403, r"\$OPENAI_API_KEY"), (404, r"check base_url")])
def test_a_wrong_key_url_or_model_is_an_endpoint_error_not_a_rejected_request(tmp_path, status, message, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ChatServer(lambda request: Reply("no", status)) as server:
        with pytest.raises(MosaError, match=message) as error:
            client(server, tmp_path).chat(HELLO)
    assert not isinstance(error.value, RequestRejected)
    assert len(server.requests) == 1


def test_an_answer_cut_off_mid_way_is_retried(tmp_path, capsys):
    with ChatServer(scripted(Reply("a long answer " * 50, cut_off=True), "whole")) as server:
        assert client(server, tmp_path).chat(HELLO) == "whole"
    assert len(server.requests) == 2
    assert "cut its answer off mid-way; retry 1 of 4" in capsys.readouterr().err


def test_a_connection_reset_while_sending_or_waiting_is_retried(tmp_path, capsys):
    # 8 MB is more than the kernel buffers hold, so the reset meets the client still sending.
    long_prompt = [{"role": "user", "content": "x" * (8 << 20)}]
    with ChatServer(lambda request: "sent", resets_while_sending=1) as server:
        assert client(server, tmp_path, cache=False).chat(long_prompt) == "sent"
    with ChatServer(scripted(Reply(reset=True), "answered")) as server:
        assert client(server, tmp_path, cache=False).chat(HELLO) == "answered"
    assert capsys.readouterr().err.count("dropped the connection; retry 1 of 4") == 2


def test_an_answer_stopped_at_max_tokens_says_it_is_truncated_also_from_the_cache(tmp_path):
    with ChatServer(lambda request: Reply("1.b 0\n2.b", finish_reason="length")) as server:
        answer = client(server, tmp_path).chat(HELLO, max_tokens=4)
        cached = client(server, tmp_path).chat(HELLO, max_tokens=4)
    assert (answer, answer.truncated) == (cached, cached.truncated) == ("1.b 0\n2.b", True)
    assert len(server.requests) == 1
    with ChatServer(lambda request: "complete") as server:
        assert not client(server, tmp_path).chat(HELLO).truncated


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


def test_timeouts_are_retried_then_reported(tmp_path, capsys):
    with ChatServer(lambda request: Reply("late", delay=1.0)) as server:
        with pytest.raises(MosaError, match=r"did not answer within 0.2s after 2 tries"):
            client(server, tmp_path, timeout=0.2, retries=1).chat(HELLO)
    assert len(server.requests) == 2
    assert "did not answer within 0.2s; retry 1 of 1" in capsys.readouterr().err


def test_the_short_spec_sets_timeout_and_retries_so_a_slow_server_answers_once(tmp_path):
    with ChatServer(lambda request: Reply("late", delay=0.5)) as server:
        short = make_backend(f"openai:m@{server.url}?timeout=0.2&retries=1&backoff=0.01&cache=false")
        with pytest.raises(MosaError, match=r"did not answer within 0.2s after 2 tries"):
            short.chat(HELLO)
        assert len(server.requests) == 2  # the server generated the answer twice
        patient = make_backend(f"openai:m@{server.url}?timeout=5&cache=false")
        assert patient.chat(HELLO) == "late"
        assert len(server.requests) == 3
    assert OpenAIChat("m").timeout == 600  # a CPU server's queue takes minutes


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


def test_a_down_endpoint_stops_after_its_retries_with_its_url_and_the_fix(tmp_path):
    backend = OpenAIChat("m", f"http://127.0.0.1:{free_port()}/v1", cache_dir=tmp_path, backoff=0.01, retries=2)
    with pytest.raises(
        MosaError,
        match=r"^http://127.0.0.1:\d+/v1/chat/completions refused the connection after 3 tries; start the server or fix base_url$",
    ):
        backend.chat_many([HELLO, HELLO, HELLO])


def test_a_server_that_comes_up_during_the_retries_answers(tmp_path):
    port = free_port()
    backend = OpenAIChat("m", f"http://127.0.0.1:{port}/v1", cache_dir=tmp_path, backoff=0.4, retries=3)
    servers = []  # a ChatServer listens from its creation on, so it is created only when it starts
    starting = threading.Timer(0.2, lambda: servers.append(ChatServer(lambda request: "up now", port=port).__enter__()))
    starting.start()
    try:
        assert backend.chat(HELLO) == "up now"
    finally:
        starting.join()
        servers[0].__exit__()


def test_make_backend_reads_strings_and_mappings(tmp_path):
    from_string = make_backend("openai:org/model@v2@http://127.0.0.1:9/v1")
    assert (from_string.model, from_string.base_url) == ("org/model@v2", "http://127.0.0.1:9/v1")
    assert from_string.name == "openai:org/model@v2@http://127.0.0.1:9/v1"
    assert make_backend("openai:gpt-4o-mini").base_url == "https://api.openai.com/v1"
    from_mapping = make_backend({"type": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "concurrency": 2})
    assert from_mapping.concurrency == 2
    with_options = make_backend("openai:org/model@v2@http://127.0.0.1:9/v1?timeout=1200&retries=8&cache=false&api_key_env=K")
    assert (with_options.model, with_options.base_url, with_options.name) == (
        from_string.model,
        from_string.base_url,
        from_string.name,
    )
    assert (with_options.timeout, with_options.retries, with_options.cache, with_options.api_key_env) == (1200.0, 8, False, "K")
    assert make_backend("openai:gpt-4o-mini?concurrency=2").concurrency == 2
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
        ("openai:m?timeout=soon", r"option timeout must be a number, not 'soon'"),
        ("openai:m?retries=2.5", r"option retries must be a whole number, not '2.5'"),
        ("openai:m?cache=maybe", r"option cache must be true or false, not 'maybe'"),
        ("openai:m?timeout", r"not of the form name=value&name=value"),
        ("openai:m?api_key=sk-1", r"no option api_key; its options: model, base_url, api_key_env, timeout, retries"),
        (42, r"not int"),
    ],
)
def test_bad_backend_specs_are_one_line_errors(spec, message):
    with pytest.raises(MosaError, match=message) as error:
        make_backend(spec)
    assert "\n" not in str(error.value)
