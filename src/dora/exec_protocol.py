"""The shell wire protocol, shared by the CLI/SDK, the API proxy and the node server.

One WebSocket carries one exec session; the same frames travel client ↔ API and
API ↔ node, so the API relays them without re-encoding:

=================  ========================================================================
frame              meaning
=================  ========================================================================
binary ``00 …``    client → server: bytes for the process's stdin
binary ``01 …``    server → client: bytes the process wrote to stdout (all output with a TTY)
binary ``02 …``    server → client: bytes the process wrote to stderr (no TTY only)
text JSON          client → server: ``{"resize": [cols, rows]}`` (TTY only),
                   ``{"eof": true}`` (close stdin: ``cat`` and friends see end of file)
text JSON          server → client: ``{"exit": code}`` when the process ended (then the
                   server closes with 1000); ``{"error": "message"}`` (then 1011)
=================  ========================================================================

Logs are plain HTTP: ``GET …/logs`` answers ``text/plain`` bytes, streamed while the
container runs when ``follow=true`` (stdout and stderr merged in order).
"""

from __future__ import annotations

import json
import re
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

STDIN, STDOUT, STDERR = 0, 1, 2
MAX_ARGS = 256
MAX_ARGV_BYTES = 4096
"""Tickets carry the argv in a header: keep it well under header size limits."""
MAX_FRAME = 1 << 20
MAX_TERMINAL = 10_000
DEFAULT_TAIL = "all"


class ProtocolError(ValueError):
    """A frame or parameter the protocol does not allow; the message says which."""


def frame(stream: int, data: bytes) -> bytes:
    return bytes((stream,)) + data


@dataclass(frozen=True)
class Control:
    resize: tuple[int, int] | None = None
    """(cols, rows)"""
    eof: bool = False


def parse_control(text: str) -> Control:
    """A client's text frame: a resize or an end of stdin."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        raise ProtocolError("control frames are JSON objects") from None
    if not isinstance(data, dict) or not data or set(data) - {"resize", "eof"}:
        raise ProtocolError('control frames are {"resize": [cols, rows]} or {"eof": true}')
    resize = data.get("resize")
    if resize is not None:
        if (
            not isinstance(resize, list)
            or len(resize) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in resize)
            or not all(0 < n <= MAX_TERMINAL for n in resize)
        ):
            raise ProtocolError("resize wants [cols, rows], two integers from 1 to 10000")
        return Control(resize=(resize[0], resize[1]))
    if data.get("eof") is not True:
        raise ProtocolError('eof frames are {"eof": true}')
    return Control(eof=True)


def resize_frame(cols: int, rows: int) -> str:
    return json.dumps({"resize": [cols, rows]})


EOF_FRAME = json.dumps({"eof": True})


def check_argv(argv: list[str]) -> list[str]:
    """The command to exec: 1–256 non-empty-overall strings, 4 KiB at most, no NUL."""
    if not argv:
        raise ProtocolError("cmd: give the command to run (at least one word)")
    if len(argv) > MAX_ARGS:
        raise ProtocolError(f"cmd: at most {MAX_ARGS} words")
    if sum(len(a.encode("utf-8", "surrogatepass")) + 1 for a in argv) > MAX_ARGV_BYTES:
        raise ProtocolError(f"cmd: at most {MAX_ARGV_BYTES} bytes in all")
    if any("\0" in a for a in argv) or not argv[0]:
        raise ProtocolError("cmd: words may not contain NUL and the first may not be empty")
    return argv


def check_tail(value: str | int | None) -> str:
    """``all`` or a line count."""
    if value is None or value == "" or str(value).lower() == "all":
        return DEFAULT_TAIL
    text = str(value)
    if not text.isdigit() or int(text) > 10_000_000:
        raise ProtocolError(f"tail must be a line count or 'all' (got {text!r})")
    return str(int(text))


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_since(text: str, now: float | None = None) -> float:
    """``10m``, ``1h30m``, ``45s``, ``2d`` (that long ago), an ISO-8601 time, or unix
    seconds → unix seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    match = _DURATION.match(text)
    if text and match and any(match.groups()):
        days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return now - (days * 86400 + hours * 3600 + minutes * 60 + seconds)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError(
            f"since: {text!r} is not a duration (10m, 1h30m, 2d), an ISO time "
            "(2024-05-01T10:00:00Z) or unix seconds"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is local time
    return when.timestamp()


class DockerDemux:
    """Splits Docker's multiplexed attach/log stream (8-byte headers: stream, 0, 0, 0,
    big-endian length) into (stream, bytes) chunks, fed incrementally."""

    _HEADER = struct.Struct(">BxxxL")

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer.extend(data)
        out: list[tuple[int, bytes]] = []
        size = self._HEADER.size
        while len(self._buffer) >= size:
            stream, length = self._HEADER.unpack_from(self._buffer)
            if len(self._buffer) < size + length:
                break
            out.append((stream, bytes(self._buffer[size : size + length])))
            del self._buffer[: size + length]
        return out
