"""API errors: one JSON shape, ``{"code", "message", "field"?}``, with the right status.

Routes raise `ApiError`; the handlers registered by `install_error_handlers` turn it,
request-validation failures and anything unexpected into that shape, so no client
input ever produces an HTML page or a bare 500 with a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dora.store import StoreError

log = logging.getLogger("dora.api")

STORE_RETRY_AFTER_S = 1
"""Retry-After of a 503 for a store that could not answer (clients retry idempotent
requests on it, `dora.client`)."""

_PARTS = ("body", "query", "path", "header", "cookie")
"""Where FastAPI says a request parameter came from (the first item of an error's loc)."""


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
        self.details = details

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return out


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, "invalid", message, field=field)


def require_unicode(value: Any, field: str = "") -> None:
    """Refuse JSON text a UTF-8 store cannot hold: a lone surrogate escape such as
    ``"\\ud800"`` parses into a Python string that fails to encode later, in the store.
    The error names the first offending field."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        where = _first_bad_text(value, field) or field or None
        raise invalid(
            f"{where or 'body'}: text must be valid Unicode (lone surrogate escapes "
            "such as \\ud800 are not allowed)",
            field=where,
        ) from None


def _bad(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _first_bad_text(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if _bad(value) else None
    items: Any = ()
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), k, v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", "", v) for i, v in enumerate(value))
    for sub, key, item in items:
        if isinstance(key, str) and _bad(key):
            return path or None
        found = _first_bad_text(item, sub)
        if found:
            return found
    return None


def unauthorized(message: str = "missing or invalid token") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def error_response(err: ApiError) -> JSONResponse:
    """`err` as the JSON answer every route gives (also an ASGI app)."""
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _allowed_methods(app: FastAPI, path: str) -> str | None:
    """Every method the OpenAPI document declares for the paths `path` matches."""
    parts = path.split("/")
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        pattern = template.split("/")
        if len(pattern) == len(parts) and all(
            want == got or (want.startswith("{") and want.endswith("}") and got)
            for want, got in zip(pattern, parts, strict=True)
        ):
            methods.update(m.upper() for m in operations)
    return ", ".join(sorted(methods)) or None


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ())]
        where = loc[0] if loc and loc[0] in _PARTS else None
        if first.get("type") == "json_invalid":
            # loc is (body, character offset): name the body, say where it broke.
            field: str | None = "body"
            reason = (first.get("ctx") or {}).get("error", "invalid JSON")
            message = f"body: invalid JSON ({reason} at character {loc[-1]})"
        else:
            field = ".".join(loc[1:] if where else loc) or where
            message = f"{field}: {first.get('msg', 'invalid')}" if field else "invalid request"
        return error_response(ApiError(422, "invalid", message, field=field))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # The router names the methods of the first route on this path only; a 405
            # must list them all (GET and DELETE of /v1/resources/{kind}/{name}).
            headers["Allow"] = _allowed_methods(app, request.url.path) or headers.get("Allow", "")
        return error_response(ApiError(exc.status_code, code, message, headers=headers))

    async def on_bad_text(_: Request, exc: Exception) -> JSONResponse:
        # Last line of defence for text that reached the store without passing
        # `require_unicode`: it is the client's input, not a server fault.
        return error_response(invalid("text must be valid Unicode (no lone surrogate escapes)"))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("event=internal_error path=%s", request.url.path)
        message = "internal error; the server log has details"
        return error_response(ApiError(500, "internal", message))

    async def on_store(request: Request, exc: Exception) -> JSONResponse:
        # The store itself could not answer (SQLite busy past its timeout, Cassandra
        # timing out): the service is unavailable for a moment, nothing is broken.
        # NotFound, Conflict and the like escaping a route are bugs: a 500.
        if type(exc) is not StoreError:
            return await on_unexpected(request, exc)
        log.warning("event=store_unavailable path=%s reason=%s", request.url.path, exc)
        return error_response(
            ApiError(
                503,
                "store_unavailable",
                f"the state store could not answer: {exc}; try again",
                headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
            )
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(UnicodeEncodeError, on_bad_text)
    app.add_exception_handler(StoreError, on_store)
    app.add_exception_handler(Exception, on_unexpected)
