"""A real OpenAI-compatible chat-completions server on 127.0.0.1 (an ephemeral port), for tests.

    with ChatServer(lambda request: "an answer") as server:
        backend = OpenAIChat("judge", server.url, cache=False)

`reply(request)` gets the request's JSON body (with its headers under "headers") and returns the
answer's text, or a `Reply` for a status, headers, a delay, a finish reason, or a failure of the
kind real servers show: an answer cut off mid-way, a connection reset. The server records every
request and the largest number it was answering at once. `resets_while_sending=N` resets the
connection of the first N requests before reading their body, while a large body is still being sent.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    finish_reason: str = "stop"  # "length": the answer stopped at max_tokens
    cut_off: bool = False  # send half of the body, then close the connection
    reset: bool = False  # reset the connection instead of answering


class ChatServer:
    def __init__(self, reply: Callable[[dict], str | Reply], port: int = 0, resets_while_sending: int = 0):
        """`port` 0 takes a free ephemeral port; a test that needs the URL before the server is up
        (an endpoint that is down, then up) passes one."""
        self.reply = reply
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.resets_left = resets_while_sending
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                with server._lock:
                    reset_now, server.resets_left = server.resets_left > 0, max(0, server.resets_left - 1)
                if reset_now:
                    return self.reset_connection()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["headers"] = dict(self.headers)
                body["path"] = self.path
                with server._lock:
                    server.requests.append(body)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    answer = server.reply(body)
                    answer = answer if isinstance(answer, Reply) else Reply(answer)
                    time.sleep(answer.delay)
                finally:
                    # Counted as answered before the answer is sent: the client may send its next
                    # request as soon as it reads this one, before this thread could count down.
                    with server._lock:
                        server.in_flight -= 1
                if answer.reset:
                    return self.reset_connection()
                try:
                    payload = json.dumps(
                        {
                            "id": "test",
                            "object": "chat.completion",
                            "model": body.get("model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": answer.content},
                                    "finish_reason": answer.finish_reason,
                                }
                            ],
                        }
                        if answer.status == 200
                        else {"error": {"message": answer.content}}
                    ).encode()
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if answer.cut_off:
                        self.close_connection = True
                        payload = payload[: len(payload) // 2]
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (timeout tests)
                    pass

            def reset_connection(self):
                """Close with a TCP reset (SO_LINGER 0) rather than an orderly close, as a crashing server does."""
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def log_message(self, *args):  # keep test output quiet
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()
        self._http.server_close()

    def prompts(self) -> list[str]:
        """The last message of each request received, in order of arrival."""
        return [request["messages"][-1]["content"] for request in self.requests]
