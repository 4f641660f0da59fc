"""The Python SDK (`dora.client.Client` and `AsyncClient`) against a real API server:
typed replies for the calls the CLI makes, and typed errors — `NotFound`, `Forbidden`,
`Invalid` with the offending `field`, `Unauthorized`, `Conflict`, `ConnectionFailed`
and `RateLimited` with `retry_after` (from a second server with a tiny rate limit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dora.api.schemas import NodeReport
from dora.client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    DoraError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
)
from tests.cli_fixtures import SERVER_ENV, node_report
from tests.helpers import (
    SEED_USER,
    ZONE,
    ApiProcess,
    apply_seed,
    doc,
    free_port,
    make_token,
    remember,
    server_fixture,
    user_with_role,
    workload_doc,
)

api = server_fixture(name="sdk", env=SERVER_ENV)
limited = server_fixture(
    name="sdk-limited", env={**SERVER_ENV, "DORA_RATE_PER_S": "0.01", "DORA_RATE_BURST": "2"}
)
"""Each token may make two requests, then one every 100 s."""


@pytest.fixture(scope="module")
def admin_token(api: ApiProcess) -> str:
    token = api.admin_token()
    with api.client(token) as admin:
        apply_seed(admin)
    return token


@pytest.fixture(scope="module")
def reader_token(api: ApiProcess, admin_token: str) -> str:
    with api.client(admin_token) as admin:
        return user_with_role(admin, "sdk-reader", {"Workload": ["Get"]}, workspace=SEED_USER).token


@pytest.fixture
def dora(api: ApiProcess, admin_token: str) -> Iterator[Client]:
    with Client(api.url, admin_token) as c:
        yield c


def test_sync_client_round_trip(dora: Client) -> None:
    assert dora.version().zone == ZONE
    assert dora.whoami().user == "admin"
    job = workload_doc("sdk-job", workspace=SEED_USER)
    assert dora.apply(job).status == "created"
    job["spec"]["replica"]["count"] = 2
    assert dora.apply(job).status == "scaled"
    assert dora.apply(job).status == "unchanged"
    listed = dora.list("wk", workspace=SEED_USER)
    assert [w.name for w in listed] == ["sdk-job"]
    got = dora.get("Workload", "sdk-job", workspace=SEED_USER)
    assert (got.kind, got.spec["replica"]["count"], got.desired) == ("Workload", 2, "run")
    assert dora.pause("sdk-job", workspace=SEED_USER).desired == "pause"
    assert dora.resume("sdk-job", workspace=SEED_USER).desired == "run"
    reasons = [e.reason for e in dora.events("wk", "sdk-job", workspace=SEED_USER)]
    assert "Created" in reasons and "Scaled" in reasons
    job["spec"]["image"]["image"] = "busybox:1.37"
    assert dora.apply(job).status == "updated"
    # scaling is not a new version of the spec; a new image is
    assert [v.number for v in dora.versions("wk", "sdk-job", workspace=SEED_USER)] == [1, 2]
    batch = dora.apply_many([doc("Workspace", "sdk-a"), doc("Workspace", "")])
    assert [item.ok for item in batch.items] == [True, False]
    assert dora.delete("wk", "sdk-job", workspace=SEED_USER).status == "draining"
    created = dora.create_token(SEED_USER, SEED_USER, "sdk", expires_in_s=600)
    remember(created.token)
    assert created.token not in str([t.model_dump() for t in dora.list_tokens(SEED_USER)])
    assert dora.revoke_token(created.jti).jti == created.jti
    with Client(dora.server, created.token) as revoked, pytest.raises(Unauthorized):
        revoked.whoami()


def test_sync_client_typed_errors(api: ApiProcess, dora: Client, reader_token: str) -> None:
    with pytest.raises(NotFound) as not_found:
        dora.get("wk", "nope", workspace=SEED_USER)
    assert not_found.value.status == 404
    assert "not found" in not_found.value.message
    with Client(api.url, reader_token) as reader, pytest.raises(Forbidden) as forbidden:
        reader.list("nodes")
    assert forbidden.value.status == 403
    with pytest.raises(Invalid) as invalid:
        dora.apply(doc("Volume", "v", {"storage": "nowhere"}, zone=ZONE, workspace=SEED_USER))
    assert invalid.value.field == "spec.storage"
    bad_count = workload_doc("bad", workspace=SEED_USER)
    bad_count["spec"]["replica"]["count"] = -1
    with pytest.raises(Invalid) as invalid_count:
        dora.apply(bad_count)
    assert invalid_count.value.field == "spec.replica.count"
    with Client(api.url, "not.a.token") as anonymous, pytest.raises(Unauthorized) as unauth:
        anonymous.whoami()
    assert (unauth.value.status, unauth.value.message) == (401, "invalid token: malformed token")
    with pytest.raises(Conflict):
        dora.delete("ws", SEED_USER)
    dead = Client(f"http://127.0.0.1:{free_port()}", "x")
    with dead, pytest.raises(ConnectionFailed) as unreachable:
        dead.version()
    assert unreachable.value.status is None
    assert all(issubclass(e, DoraError) for e in (NotFound, Forbidden, Invalid, RateLimited))


def test_sync_node_channel(api: ApiProcess, admin_token: str) -> None:
    with Client(api.url, admin_token) as admin:
        node_token = make_token_via_sdk(admin, "node", "node")
    with Client(api.url, node_token) as agent:
        report = NodeReport.model_validate(node_report(cpus=2, gpus=1))
        out = agent.report("node2", report, agent="sdk-agent")
        assert (out.node, out.status) == ("node2", "READY")
        assert agent.assignments("node2").containers == []


def make_token_via_sdk(admin: Client, user: str, workspace: str) -> str:
    return remember(admin.create_token(user, workspace, "sdk").token)


async def test_async_client_round_trip_and_typed_errors(
    api: ApiProcess, admin_token: str, reader_token: str
) -> None:
    async with AsyncClient(api.url, admin_token) as dora:
        assert (await dora.version()).zone == ZONE
        job = workload_doc("async-job", workspace=SEED_USER)
        assert (await dora.apply(job)).status == "created"
        assert "async-job" in [w.name for w in await dora.list("wk", workspace=SEED_USER)]
        assert (await dora.pause("async-job", workspace=SEED_USER)).desired == "pause"
        assert (await dora.resume("async-job", workspace=SEED_USER)).desired == "run"
        assert [v.number for v in await dora.versions("wk", "async-job", workspace=SEED_USER)]
        assert await dora.events("wk", "async-job", workspace=SEED_USER)
        assert (await dora.delete("wk", "async-job", workspace=SEED_USER)).status == "draining"
        created = await dora.create_token(SEED_USER, SEED_USER, "async")
        remember(created.token)
        assert [t.jti for t in await dora.list_tokens(SEED_USER) if t.id == "async"]
        await dora.revoke_token(created.jti)
        with pytest.raises(NotFound):
            await dora.get("wk", "nope", workspace=SEED_USER)
        with pytest.raises(Invalid) as invalid:
            await dora.apply(doc("Volume", "v", {"storage": "x"}, zone=ZONE, workspace=SEED_USER))
        assert invalid.value.field == "spec.storage"
    async with AsyncClient(api.url, reader_token) as reader:
        with pytest.raises(Forbidden):
            await reader.list("nodes")
    async with AsyncClient(api.url, created.token) as revoked:
        with pytest.raises(Unauthorized) as unauth:
            await revoked.whoami()
    assert unauth.value.message == "invalid token: revoked"
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as dead:
        with pytest.raises(ConnectionFailed):
            await dead.version()


async def test_rate_limited_carries_retry_after(limited: ApiProcess) -> None:
    admin_token = limited.admin_token()
    with limited.client(admin_token) as raw:
        apply_seed(raw)  # the admin's first request
        user_token = make_token(raw, SEED_USER, SEED_USER).token  # and second
    with Client(limited.url, admin_token) as admin, pytest.raises(RateLimited) as limited_sync:
        admin.whoami()  # third: over the burst of two
    assert limited_sync.value.status == 429
    assert limited_sync.value.retry_after is not None and limited_sync.value.retry_after >= 1
    async with AsyncClient(limited.url, user_token) as user:
        await user.whoami()
        await user.whoami()
        with pytest.raises(RateLimited) as limited_async:
            await user.whoami()
    assert limited_async.value.retry_after is not None and limited_async.value.retry_after >= 1
    assert "rate limit" in limited_async.value.message
