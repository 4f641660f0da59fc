"""`dora workspace clone` and `dora credits` as subprocesses against a real API server,
as the admin guide's user; and the same two calls through the sync and async SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import yaml

from dora.client import AsyncClient, Client, Conflict, Forbidden, Invalid
from dora.credits import TOTAL_USED, USERCREDIT_KIND, WEEKLY_USED
from dora.store import Key, NewRecord, Store
from tests.cli_fixtures import SERVER_ENV, Cli
from tests.helpers import (
    SEED_USER,
    ZONE,
    ApiProcess,
    apply,
    apply_seed,
    doc,
    make_token,
    server_fixture,
    unique,
    with_store,
)

api = server_fixture(name="cli-account", env=SERVER_ENV)


@pytest.fixture(scope="module")
def admin_token(api: ApiProcess) -> str:
    token = api.admin_token()
    with api.client(token) as admin:
        apply_seed(admin)
    return token


@pytest.fixture(scope="module")
def user_token(api: ApiProcess, admin_token: str) -> str:
    with api.client(admin_token) as admin:
        return make_token(admin, SEED_USER, SEED_USER).token


@pytest.fixture(scope="module")
def cli(
    api: ApiProcess, admin_token: str, user_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cli]:
    """The CLI logged in as the guide's user (amedeo.setti)."""
    c = Cli(tmp_path_factory.mktemp("cli-account-home"))
    c.login(api, user_token, name="amedeo")
    yield c
    c.assert_no_token_leaks()


def test_clone_prints_the_workspace_and_the_grants(cli: Cli) -> None:
    name = unique("exp")
    result = cli.run("workspace", "clone", name)
    assert result.err == ""
    assert result.lines == [
        f"workspace/{SEED_USER}.{name} created from {SEED_USER}",
        f"granted  user on All in zone {ZONE}, workspace {SEED_USER}.{name}",
    ]
    # …and the new workspace is usable at once.
    listed = cli.run("get", "wk", "-g", f"{SEED_USER}.{name}")
    assert listed.lines[0].split()[0] == "kind" and len(listed.lines) == 2  # header, rule


def test_clone_with_source_zone_and_json(cli: Cli) -> None:
    name = unique("j")
    out = json.loads(
        cli.run("workspace", "clone", name, "-g", SEED_USER, "-z", ZONE, "-o", "json").out
    )
    assert out["workspace"] == f"{SEED_USER}.{name}" and out["source"] == SEED_USER
    assert out["grants"] == [
        {"kind": "All", "zone": ZONE, "workspace": f"{SEED_USER}.{name}", "role": "user"}
    ]
    again = cli.run("workspace", "clone", name, expect=1)
    assert again.out == ""
    assert len(again.err_lines) == 1 and "already exists" in again.err


def test_clone_errors_are_one_line(cli: Cli) -> None:
    bad = cli.run("workspace", "clone", "bad name", expect=1)
    assert bad.err_lines[0].startswith("error: name: must be a name")
    other = cli.run("workspace", "clone", "x", "-g", "node", expect=1)
    assert len(other.err_lines) == 1 and "may not Clone Workspace" in other.err
    usage = cli.run("workspace", "clone", "x", "-o", "table", expect=2)
    assert usage.err_lines == ["error: unknown output 'table': use json or yaml"]


def test_credits_before_and_after_the_checker_wrote(api: ApiProcess, cli: Cli) -> None:
    lines = cli.run("credits").lines
    assert lines == [
        f"user          {SEED_USER}",
        f"zone          {ZONE}",
        "weekly limit  500",
        "weekly used   0",
        "remaining     500",
        "total used    0",
        "updated       never",
    ]
    key = Key(USERCREDIT_KIND, ZONE, "", SEED_USER)
    computed = {WEEKLY_USED: 12.5, TOTAL_USED: 40}

    async def write(store: Store) -> None:
        await store.create(
            NewRecord(key=key, spec={}, owner="creditsys", computed=computed), actor="t"
        )

    with_store(api, write)
    out = yaml.safe_load(cli.run("credits", "-o", "yaml").out)
    assert (out["weekly_used"], out["remaining"], out["total_used"]) == (12.5, 487.5, 40.0)
    assert out["updated_at"] is not None
    lines = cli.run("credits", "-z", ZONE).lines
    assert "remaining     487.5" in lines and lines[-1].startswith("updated       20")


def test_credits_of_others_and_bad_zones_are_one_line_errors(cli: Cli, admin_token: str) -> None:
    other = cli.run("credits", "--user", "node", expect=1)
    assert len(other.err_lines) == 1 and "Credits of other users" in other.err
    zone = cli.run("credits", "-z", "All", expect=1)
    assert zone.err_lines == ["error: zone All names every zone; name one zone here"]
    # The admin may read anyone's.
    admin = cli.run("credits", "--user", SEED_USER, "-o", "json", env={"DORA_TOKEN": admin_token})
    assert json.loads(admin.out)["weekly_limit"] == 500.0


def test_the_sync_and_async_sdk(api: ApiProcess, admin_token: str, user_token: str) -> None:
    name = unique("sdk")
    with Client(api.url, user_token) as dora:
        made = dora.clone_workspace(name)  # the source defaults to the token's workspace
        assert made.workspace == f"{SEED_USER}.{name}" and len(made.grants) == 1
        with pytest.raises(Conflict):
            dora.clone_workspace(name, source=SEED_USER)
        with pytest.raises(Invalid) as bad:
            dora.clone_workspace("no way")
        assert bad.value.field == "name"
        with pytest.raises(Forbidden):
            dora.credits(user="node")
        assert dora.credits().weekly_limit == 500.0

    async def go() -> None:
        async with AsyncClient(api.url, user_token) as dora:
            made = await dora.clone_workspace(f"{name}-a", zone=ZONE)
            assert made.source == SEED_USER and made.grants[0].workspace == made.workspace
            assert (await dora.credits(zone=ZONE)).user == SEED_USER
        async with AsyncClient(api.url, admin_token) as admin:
            assert (await admin.credits(user=SEED_USER)).weekly_limit == 500.0

    asyncio.run(go())
    with api.client(admin_token) as admin:
        apply(admin, doc("Workspace", unique("unused")))  # the server still serves
