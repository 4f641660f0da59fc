"""Typed errors of the Python client: one class per kind of failure, each carrying the
server's code, message and (for invalid input) the offending field path."""

from __future__ import annotations

from typing import Any


class DoraError(Exception):
    """Base class: something went wrong talking to Dora."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.details = details or []
        self.retry_after = retry_after


class ConnectionFailed(DoraError):
    """The API server could not be reached."""


class Invalid(DoraError):
    """400/422: the request or document is invalid (see `field`)."""


class Unauthorized(DoraError):
    """401: missing, invalid, expired or revoked token."""


class Forbidden(DoraError):
    """403: your roles do not allow this here."""


class NotFound(DoraError):
    """404: no such resource (or route)."""


class Conflict(DoraError):
    """409: the resource is busy (being deleted, raced, still has dependents)."""


class RateLimited(DoraError):
    """429: too many requests or failed logins; see `retry_after`."""


class ServerError(DoraError):
    """5xx: the server failed; its log has details."""


_BY_STATUS: dict[int, type[DoraError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: RateLimited,
}


def error_for(status: int, body: Any, retry_after: str | None) -> DoraError:
    """Build the typed error for an HTTP error reply."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else DoraError)
    if isinstance(body, dict):
        message = str(body.get("message") or f"HTTP {status}")
        code = str(body.get("code") or "error")
        field = body.get("field")
        details = body.get("details") if isinstance(body.get("details"), list) else None
    else:
        message, code, field, details = f"HTTP {status}", "error", None, None
    after = float(retry_after) if retry_after and retry_after.isdigit() else None
    return cls(
        message,
        status=status,
        code=code,
        field=str(field) if field else None,
        details=details,
        retry_after=after,
    )
