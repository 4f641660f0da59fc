"""Health, readiness, version, metrics, OpenAPI, and what the server writes to its log."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import (
    SEED_USER,
    TOKENS_SEEN,
    ApiProcess,
    apply_many,
    leaked_tokens,
    make_token,
    seed_documents,
    server_fixture,
    workload_doc,
)

api = server_fixture(name="system")


@pytest.fixture(scope="module")
def admin(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(api.admin_token()) as c:
        apply_many(c, seed_documents())
        yield c


def test_health_and_readiness(api: ApiProcess) -> None:
    with httpx.Client(base_url=api.url) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        version = c.get("/v1/version").json()
        assert version["zone"] == "dora-cluster-1"
        assert version["api"] == "v1"


def test_metrics_count_requests_and_time_the_store(api: ApiProcess, admin: httpx.Client) -> None:
    assert admin.post("/v1/apply", json=workload_doc("metered", workspace=SEED_USER)).is_success
    assert admin.get("/v1/resources/workload", params={"workspace": SEED_USER}).is_success
    assert admin.get("/v1/resources/workload/x/y/z").status_code == 404
    with httpx.Client(base_url=api.url) as c:
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "dora_api_requests_total" in text
    assert "dora_store_call_seconds_bucket" in text

    def series(*labels: str) -> list[str]:
        return [line for line in text.splitlines() if all(label in line for label in labels)]

    assert series("dora_api_requests_total{", 'route="/v1/apply"', 'method="POST"', 'status="200"')
    # Templates, not one series per resource name.
    assert series("dora_api_requests_total{", 'route="/v1/resources/{kind}"')
    assert series("dora_api_requests_total{", 'route="unmatched"', 'status="404"')
    assert series("dora_api_request_seconds_bucket{", 'route="/v1/apply"')
    assert series("dora_store_call_seconds_count{", 'method="batch"')  # apply's write


def test_openapi_documents_every_route(api: ApiProcess) -> None:
    with httpx.Client(base_url=api.url) as c:
        spec = c.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/apply",
        "/v1/apply-many",
        "/v1/resources/{kind}",
        "/v1/resources/{kind}/{name}",
        "/v1/resources/{kind}/{name}/events",
        "/v1/resources/{kind}/{name}/versions",
        "/v1/workloads/{name}/pause",
        "/v1/workloads/{name}/resume",
        "/v1/tokens",
        "/v1/tokens/{jti}",
        "/v1/nodes/{name}/report",
        "/v1/nodes/{name}/assignments",
    } <= paths
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if path.startswith("/v1/") and path != "/v1/version":
                assert "401" in op["responses"], f"{method.upper()} {path} lacks 401"
                assert "429" in op["responses"], f"{method.upper()} {path} lacks 429"


def test_tokens_never_reach_the_log(api: ApiProcess, admin: httpx.Client) -> None:
    """Every token used against this server — good, revoked, or sent where it does not
    belong (a query string, as the original's clients did) — is absent from the log;
    the admin token appears once, on its announcement line."""
    user = make_token(admin, SEED_USER, SEED_USER, "log-check")
    with api.client(user.token) as c:
        assert c.get("/v1/whoami").status_code == 200
    assert admin.delete(f"/v1/tokens/{user.jti}").status_code == 200
    with api.client(user.token) as c:
        assert c.get("/v1/whoami").status_code == 401
    with httpx.Client(base_url=api.url) as c:
        c.get("/v1/whoami", params={"access_token": user.token})
        c.get(f"/v1/resources/{user.token}")
    assert user.token in TOKENS_SEEN
    printed = api.admin_tokens_printed()
    assert len(printed) == 1
    log = api.log_text()
    assert "GET /v1/whoami" in log  # the access log is on: it is what is being checked
    # One line per request, with status and duration (dora.api.access_log).
    assert re.search(
        r"logger=dora\.access 127\.0\.0\.1:\d+ - \"GET /v1/whoami HTTP/1\.1\" 401 \d+\.\dms",
        log,
    )
    assert leaked_tokens(log, admin_token=printed[0]) == []
