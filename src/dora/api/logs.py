"""Keep tokens out of the server's logs.

The server itself never logs a token (it logs `dora.auth.fingerprint` instead), but a
client may put one where a log line repeats it: in a URL (``?access_token=…``, as the
original's clients did) that uvicorn's access log prints, or in a path. Every handler
of the server's loggers therefore masks anything shaped like a JWT.

A shell's command travels in its WebSocket URL (``…/shell?cmd=env&cmd=PASSWORD=…``),
and uvicorn logs that URL when the socket opens; a command line can hold a secret as
easily as a token can, so the values of ``cmd`` are masked too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
"""A JWT: base64url of ``{"…`` (the header), payload and signature."""
MASK = "[token]"
_SHELL_ARG = re.compile(r"([?&]cmd=)[^&\s\"']*")
"""One ``cmd`` value of a shell URL's query (up to the next parameter or the URL's end)."""
ARG_MASK = "[arg]"
_LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "dora")


def redact(text: str) -> str:
    # Every access-log line passes here: a substring test first (a JWT starts with
    # "eyJ", a shell argument follows "cmd=") spares most lines both regexes.
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "cmd=" in text:
        text = _SHELL_ARG.sub(rf"\g<1>{ARG_MASK}", text)
    return text


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """Mask JWT-shaped strings and shell arguments in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            # Rebuilt only when an argument changes (most access-log lines: none).
            for arg in args:
                if isinstance(arg, str) and redact(arg) is not arg:
                    record.args = tuple(_clean(a) for a in args)
                    break
        elif isinstance(args, dict):
            record.args = {k: _clean(v) for k, v in args.items()}
        return True


def redact_tokens_in_logs() -> None:
    """Attach the filter to every handler of the server's loggers (idempotent).
    Handler filters see records propagated from child loggers too."""
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactTokens) for f in handler.filters):
                handler.addFilter(RedactTokens())
