"""The agent's side of the node channel: one `httpx.AsyncClient` with timeouts.

``POST /v1/nodes/{name}/report?zone=`` (heartbeat) and
``GET /v1/nodes/{name}/assignments?zone=&since=&wait=`` (long-poll), both carrying the
node token and ``X-Dora-Agent``. Errors become `ApiError` with a message an admin can
act on; the token never appears in one.
"""

from __future__ import annotations

import random
import ssl
from typing import Any
from urllib.parse import quote

import httpx

from dora import __version__

AGENT_HEADER = "X-Dora-Agent"


class ApiError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _explain(status: int, detail: str, node: str, zone: str | None) -> str:
    where = f"node {node!r}" + (f" in zone {zone!r}" if zone else "")
    if status == 401:
        return (
            f"the API refused API_TOKEN (401: {detail}); "
            "create one with `dora token create node node 1`"
        )
    if status == 403:
        return (
            f"API_TOKEN may not report for {where} (403: {detail}); give its user a role "
            "with Node: [report] (see the admin guide, Nodes)"
        )
    if status == 404:
        return f"{where} is not registered (404: {detail})"
    if status == 409:
        return f"{where} is held by another agent (409: {detail})"
    return f"the API answered {status}: {detail}"


class Backoff:
    """Exponential delays with full jitter: base, 2×base… capped; `reset` on success."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 15.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def ssl_verify(*, insecure: bool, ca_file: str | None) -> ssl.SSLContext | bool:
    if insecure:
        return False
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return True


class ApiClient:
    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        node: str,
        agent_id: str,
        zone: str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout_s: float = 15.0,
    ) -> None:
        self.node = node
        self.zone = zone
        self.agent_id = agent_id
        self._timeout = httpx.Timeout(timeout_s, connect=5.0)
        self._http = httpx.AsyncClient(
            base_url=endpoint,
            headers={
                "Authorization": f"Bearer {token}",
                AGENT_HEADER: agent_id,
                "User-Agent": f"dora-node/{__version__}",
            },
            timeout=self._timeout,
            verify=verify,
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._http.aclose()

    def _path(self, tail: str) -> str:
        return f"/v1/nodes/{quote(self.node, safe='')}/{tail}"

    def _params(self, **extra: Any) -> dict[str, Any]:
        params = {k: v for k, v in extra.items() if v is not None}
        if self.zone:
            params["zone"] = self.zone
        return params

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiError(f"the API did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                hint = (
                    "; set DORA_API_CA to the PEM of the CA that signed the API's certificate "
                    "(or DORA_INSECURE_API=true to accept any certificate)"
                )
            raise ApiError(f"cannot reach the API: {type(exc).__name__}: {exc}{hint}") from None
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("message") or response.text)
            except ValueError:
                detail = response.text[:300]
            raise ApiError(
                _explain(response.status_code, detail, self.node, self.zone),
                status=response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the API answered non-JSON ({response.status_code})") from None

    async def version(self) -> dict[str, Any]:
        data = await self._call("GET", "/v1/version")
        return data if isinstance(data, dict) else {}

    async def report(self, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._call("POST", self._path("report"), params=self._params(), json=body)
        return data if isinstance(data, dict) else {}

    async def assignments(self, since: str | None, wait_s: float) -> dict[str, Any]:
        timeout = httpx.Timeout(wait_s + 15.0, connect=5.0)
        data = await self._call(
            "GET",
            self._path("assignments"),
            params=self._params(since=since, wait=wait_s if since else None),
            timeout=timeout,
        )
        if not isinstance(data, dict) or not isinstance(data.get("containers"), list):
            raise ApiError("the API sent malformed assignments")
        return data
