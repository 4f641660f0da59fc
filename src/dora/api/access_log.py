"""The API's access log: one line per HTTP request, written when its answer is done.

uvicorn's own access log (off in `dora server api`) goes through the `logging`
machinery for every request: a record, a copy of it, a formatter, the caller's frame
looked up, a lock — ~50 µs of the ~140 µs a cached listing cost the server, more
than the listing itself. This writes the same facts as one pre-formatted line:

    2026-12-06 05:35:35,912 level=INFO logger=dora.access 127.0.0.1:47850 - \\
        "GET /v1/whoami HTTP/1.1" 200 0.4ms

(one line; the timestamp as the other server lines have it; the duration from the
request's start to the end of its answer, so a streamed answer is logged when it ends). The
request target is masked like every other log line (`dora.api.logs.redact`: tokens,
shell arguments) and escaped (non-ASCII and control bytes as ``\\xNN``), so a client
cannot forge or split lines. Lines go to standard output, each written and flushed at
once, and only while the ``dora.access`` logger is enabled for INFO (so
``--log-level WARNING`` silences them, as it did uvicorn's). WebSocket handshakes are
logged by uvicorn as before.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from starlette.types import Scope

from dora.api.logs import redact

LOGGER = "dora.access"


class AccessLog:
    """Writes access lines to `stream` (standard output by default, looked up at each
    write, so a redirected ``sys.stdout`` is followed)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self._stream = stream
        self.enabled = (
            logging.getLogger(LOGGER).isEnabledFor(logging.INFO) if enabled is None else enabled
        )
        self._second = -1
        self._stamp = ""
        self.dropped = 0
        """Lines that could not be written (a closed or broken standard output)."""

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def line(self, scope: Scope, status: int, seconds: float, now: float) -> str:
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else "-"
        target = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string")
        if query:
            target += b"?" + query
        text = target.decode("latin-1")
        if not (target.isascii() and text.isprintable()):
            text = "".join(c if " " <= c < "\x7f" else f"\\x{ord(c):02x}" for c in text)
        text = redact(text)
        version = scope.get("http_version", "1.1")
        return (
            f"{self._timestamp(now)} level=INFO logger={LOGGER} {peer} - "
            f'"{scope["method"]} {text} HTTP/{version}" {status} {seconds * 1000:.1f}ms\n'
        )

    def write(self, scope: Scope, status: int, seconds: float) -> None:
        if not self.enabled:
            return
        stream = self._stream or sys.stdout
        try:
            stream.write(self.line(scope, status, seconds, time.time()))
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stdout never fails a request
            self.dropped += 1
