"""A real `mosa serve` application on 127.0.0.1 (uvicorn in a thread, a free port) over a tiny model."""

import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn

from mosa.serve import ServeSettings, create_app
from tests.conftest import free_port, tiny_llama

# The tiny model's default canvas: 16 positions, one token per step, blocks of 8.
SAMPLER = {"gen_length": 16, "steps": 16, "block_length": 8}


@contextmanager
def running(lm, *, port=None, **settings):
    """Serve `lm` on `port` (a free one by default); yields (base URL ending in /v1, the FastAPI app)."""
    app = create_app(lm, ServeSettings(**{"model_name": "tiny", "sampler": SAMPLER, **settings}))
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def tiny(tokenizer):
    return tiny_llama(tokenizer)


@pytest.fixture(scope="module")
def served(tiny):
    """The tiny model served with the defaults, batching requests sent within 50 ms of each other."""
    with running(tiny, batch_wait=0.05) as (url, app):
        yield url, app


@pytest.fixture
def client(served):
    from openai import OpenAI

    return OpenAI(base_url=served[0], api_key="unused", max_retries=0)
