"""The client sends an idempotent request again when the server answers 503 with a
short Retry-After (its state store was busy for a moment), a bounded number of times;
anything else is answered at once. Against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dora.api.schemas import VersionInfo
from dora.client import AsyncClient, Client
from dora.client.calls import Call
from dora.client.errors import ServerError


class Server:
    """Answers each request with the next planned (status, Retry-After), then 200."""

    def __init__(self) -> None:
        self.plan: list[tuple[int, str | None]] = []
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.seen.append(self.command)
                status, after = outer.plan.pop(0) if outer.plan else (200, None)
                body = (
                    json.dumps({"server": "t", "zone": "z"})
                    if status == 200
                    else json.dumps({"code": "store_unavailable", "message": "busy"})
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if after is not None:
                    self.send_header("Retry-After", after)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_DELETE = do_POST = _answer

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join(timeout=10)


def call(method: str) -> Call[VersionInfo]:
    return Call(method, "/v1/version", VersionInfo)


def test_an_idempotent_request_is_sent_again_after_a_short_503(server: Server) -> None:
    server.plan = [(503, "0"), (503, "0")]
    with Client(server.url) as c:
        assert c.call(call("GET")).zone == "z"
        server.plan = [(503, "0")]
        assert c.call(call("DELETE")).zone == "z"
    assert server.seen == ["GET", "GET", "GET", "DELETE", "DELETE"]


@pytest.mark.parametrize(
    ("plan", "method", "sent"),
    [
        ([(503, "0")] * 3, "GET", 3),  # two retries at most, then the error
        ([(503, "0")], "POST", 1),  # not idempotent: never sent twice
        ([(503, None)], "GET", 1),  # no Retry-After: the server did not ask
        ([(503, "60")], "GET", 1),  # too long to wait here
        ([(500, "0")], "GET", 1),  # a failure, not a busy moment
    ],
)
def test_other_answers_are_taken_at_once(
    server: Server, plan: list[tuple[int, str | None]], method: str, sent: int
) -> None:
    server.plan = list(plan)
    with Client(server.url) as c, pytest.raises(ServerError):
        c.call(call(method))
    assert len(server.seen) == sent


async def test_the_async_client_retries_too(server: Server) -> None:
    server.plan = [(503, "0")]
    async with AsyncClient(server.url) as c:
        assert (await c.call(call("GET"))).zone == "z"
    assert server.seen == ["GET", "GET"]
