"""Bad input gets a 4xx in OpenAI's error shape and the server goes on; limits, the API key, and a
client that disconnects freeing its slot."""

import http.client
import json
import socket
import time
import urllib.error
import urllib.request

import openai
import pytest

from mosa.cli import main
from mosa.cli.serve import is_loopback, served_gen_length
from tests.conftest import free_port
from tests.serve.conftest import running


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ask(client, **overrides):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], **overrides}
    extra = {
        key: body.pop(key) for key in list(body) if key not in ("model", "messages", "n", "temperature", "top_p", "max_tokens")
    }
    return client.chat.completions.create(**body, extra_body=extra)


@pytest.mark.parametrize(
    ("overrides", "error", "says"),
    [
        ({"model": "gpt-4o"}, openai.NotFoundError, "is not served here"),
        ({"steps": 5}, openai.BadRequestError, "multiple of the number of blocks"),
        ({"gen_length": 4096}, openai.BadRequestError, "at most 1024"),
        ({"remasking": "best"}, openai.BadRequestError, "remasking"),
        ({"step": 8}, openai.BadRequestError, "step: Extra inputs are not permitted"),
        ({"top_p": 0.5}, openai.BadRequestError, "top_p=0.5 is not supported"),
        ({"n": 99}, openai.BadRequestError, "at most 8 choices"),
        ({"temperature": -1}, openai.BadRequestError, "temperature"),
        ({"prefill": {"14": "the cat sat on"}}, openai.BadRequestError, "outside the canvas [0, 16)"),
        ({"prefill": {"0": "the cat", "1": "dog"}}, openai.BadRequestError, "overlaps"),
        ({"messages": [{"role": "user", "content": "  "}]}, openai.BadRequestError, "empty"),
        ({"messages": [{"role": "user", "content": "the " * 5000}]}, openai.BadRequestError, "shorten it"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, openai.BadRequestError, "messages.0.role"),
    ],
)
def test_bad_requests_are_refused_in_one_line(client, overrides, error, says):
    with pytest.raises(error) as refused:
        ask(client, **overrides)
    assert says in refused.value.body["message"]
    assert refused.value.body["type"] in ("invalid_request_error",)
    assert ask(client).choices[0].message.content is not None  # and the server goes on


def test_malformed_bodies_and_unknown_routes(served):
    url = served[0]
    assert post(url + "/chat/completions", b"{not json") == (
        400,
        {"error": {"message": "the body is not valid JSON", "type": "invalid_request_error", "param": None, "code": None}},
    )
    status, body = post(url + "/chat/completions", b"[1, 2]")
    assert status == 400 and "error" in body
    status, body = post(url + "/embeddings", b"{}")
    assert status == 404 and "no such endpoint" in body["error"]["message"]
    status, body = post(url + "/completions", json.dumps({"model": "tiny", "prompt": ["a", "b"]}).encode())
    assert status == 400 and "one prompt per request" in body["error"]["message"]


def test_body_size_limit(tiny):
    with running(tiny, max_body_bytes=2000) as (url, _):
        big = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hello " * 1000}]}).encode()
        status, body = post(url + "/chat/completions", big)
        assert status == 413 and "2000 bytes" in body["error"]["message"]
        connection = http.client.HTTPConnection("127.0.0.1", int(url.split(":")[2].split("/")[0]))  # chunked: no length declared
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=iter([big[:1500], big[1500:]]),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 413 and "error" in json.loads(response.read())
        assert (
            post(
                url + "/chat/completions", json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}).encode()
            )[0]
            == 200
        )


def test_prompt_and_concurrency_limits(tiny):
    from openai import OpenAI

    with running(tiny, max_prompt_tokens=6, max_concurrency=2) as (url, app):
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="at most 6"):
            ask(client, messages=[{"role": "user", "content": "the cat sat on the mat and ran fast"}])
        with pytest.raises(openai.RateLimitError, match="at most 2 at once"):
            ask(client, n=3)
        assert app.state.slots.taken == 0
        assert ask(client, n=2).choices[1].index == 1


def test_api_key(tiny):
    from openai import OpenAI

    with running(tiny, api_key="s3cret") as (url, _):
        for key in ("wrong", ""):
            with pytest.raises(openai.AuthenticationError, match="Bearer"):
                ask(OpenAI(base_url=url, api_key=key or "x", max_retries=0, default_headers={} if key else {"Authorization": ""}))
        assert ask(OpenAI(base_url=url, api_key="s3cret", max_retries=0)).choices
        status, _ = post(url + "/models", b"")
        assert status in (401, 405)
        with urllib.request.urlopen(url.replace("/v1", "/health")) as response:  # liveness needs no key
            assert response.status == 200


def test_binding_beyond_loopback_needs_a_key(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("MOSA_SERVE_API_KEY", raising=False)
    assert main(["serve", "--model", str(tmp_path / "absent"), "--host", "0.0.0.0"]) == 2
    error = capsys.readouterr().err
    assert "MOSA_SERVE_API_KEY" in error and error.count("\n") == 1
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_the_longest_canvas_fits_the_models_positions(capsys):
    """A canvas as long as the model's positions leaves none for the prompt: every request asking it
    would be refused, so the server refuses it at start (the organism, 256 positions)."""
    assert main(["serve", "--model", "organism", "--max-gen-length", "4096", "--port", str(free_port())]) == 2
    error = capsys.readouterr().err
    assert error == "mosa: error: --max-gen-length 4096: the model has 256 positions, prompt included; give at most 255\n"
    assert served_gen_length(None, 256) == 255 and served_gen_length(None, 8192) == 1024 and served_gen_length(None, None) == 1024
    assert served_gen_length(200, 256) == 200


def wait_for(condition, seconds=20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_frees_its_slot(tiny, stream):
    """One slot; a long request whose client goes away: it never samples to the end, and the next request
    gets the slot."""
    from openai import OpenAI

    with running(tiny, max_concurrency=1, sampler={"gen_length": 512, "steps": 512, "block_length": 512}) as (url, app):
        port = int(url.split(":")[2].split("/")[0])
        body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "stream": stream}).encode()
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert wait_for(lambda: app.state.slots.taken == 1)
            if stream:
                assert connection.recv(100).startswith(b"HTTP/1.1 200")
        assert wait_for(lambda: app.state.slots.taken == 0)
        # dropped from the queue (a streamed request's headers go out before it samples), or its batch stopped
        engine = app.state.engine
        assert wait_for(lambda: engine.batches == engine.abandoned), (engine.batches, engine.abandoned)
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        assert ask(client, gen_length=16, steps=16, block_length=8).choices[0].message.content is not None
