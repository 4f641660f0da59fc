"""The API's access log line: what it says, what it masks, what it escapes, and that
a broken standard output never fails a request."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import pytest

from dora.api.access_log import LOGGER, AccessLog

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl"


def scope(raw_path: bytes, query: bytes = b"", **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "client": ("127.0.0.1", 47850),
        "http_version": "1.1",
        **extra,
    }


def test_a_line_names_client_request_status_and_duration() -> None:
    out = io.StringIO()
    AccessLog(out, enabled=True).write(scope(b"/v1/whoami", b"zone=z1"), 200, 0.00042)
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} level=INFO logger=dora\.access "
        r'127\.0\.0\.1:47850 - "GET /v1/whoami\?zone=z1 HTTP/1\.1" 200 0\.4ms\n',
        line,
    ), line


def test_tokens_and_shell_arguments_are_masked() -> None:
    out = io.StringIO()
    log = AccessLog(out, enabled=True)
    log.write(scope(b"/v1/whoami", b"access_token=" + JWT.encode()), 401, 0.001)
    log.write(scope(f"/v1/resources/{JWT}".encode()), 404, 0.001)
    log.write(scope(b"/v1/containers/a.1/shell", b"cmd=env&cmd=PASSWORD%3Dhunter2"), 101, 0.1)
    text = out.getvalue()
    assert JWT not in text and "hunter2" not in text
    assert text.count("[token]") == 2 and text.count("[arg]") == 2


def test_control_and_non_ascii_bytes_are_escaped_so_no_line_can_be_forged() -> None:
    out = io.StringIO()
    forged = b'/v1/x\r\n2026-01-01 00:00:00,000 level=INFO "GET /ok" 200\x1b[2J\xc3\xa9'
    AccessLog(out, enabled=True).write(scope(forged), 404, 0.001)
    line = out.getvalue()
    assert line.count("\n") == 1 and "\r" not in line and "\x1b" not in line
    assert "\\x0d\\x0a" in line and "\\x1b" in line and "\\xc3\\xa9" in line


def test_no_client_and_no_raw_path_still_make_a_line() -> None:
    out = io.StringIO()
    bare = {"method": "POST", "path": "/v1/apply", "query_string": b""}
    AccessLog(out, enabled=True).write(bare, 500, 0.25)
    assert '- - "POST /v1/apply HTTP/1.1" 500 250.0ms' in out.getvalue()


def test_it_follows_the_level_of_its_logger() -> None:
    logger = logging.getLogger(LOGGER)
    before = logger.level
    try:
        logger.setLevel(logging.WARNING)
        out = io.StringIO()
        quiet = AccessLog(out)
        quiet.write(scope(b"/v1/whoami"), 200, 0.001)
        assert not quiet.enabled and out.getvalue() == ""
        logger.setLevel(logging.INFO)
        assert AccessLog(out).enabled
    finally:
        logger.setLevel(before)


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), ValueError("closed")])
def test_a_broken_output_drops_the_line_and_never_raises(error: Exception) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise error

    log = AccessLog(Broken(), enabled=True)
    log.write(scope(b"/v1/whoami"), 200, 0.001)
    log.write(scope(b"/v1/whoami"), 200, 0.001)
    assert log.dropped == 2
