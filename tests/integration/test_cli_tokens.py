"""`dora token create|list|revoke` as a subprocess against a real API server: the
printed token is the only output and works; listings never show a token; a revoked
token fails with one readable line; and no command of this module ever printed a
token other than `token create` printing its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli_fixtures import SERVER_ENV, Cli, node_report, report_node, table_rows
from tests.helpers import (
    SEED_USER,
    ApiProcess,
    apply_seed,
    server_fixture,
    user_with_role,
)

api = server_fixture(name="cli-tokens", env=SERVER_ENV)


@pytest.fixture(scope="module")
def cli(api: ApiProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    admin_token = api.admin_token()
    with api.client(admin_token) as admin:
        apply_seed(admin)
    c = Cli(tmp_path_factory.mktemp("cli-tokens-home"))
    c.login(api, admin_token)
    yield c
    c.assert_no_token_leaks()


def test_token_create_prints_only_a_token_that_works(cli: Cli) -> None:
    token = cli.create_token(SEED_USER, SEED_USER, "1", "--expires", "1h")
    assert token.count(".") == 2 and " " not in token
    # the user's own token reads the user's workspace (their default)
    volumes = cli.run("get", "vol", env={"DORA_TOKEN": token})
    assert table_rows(volumes.out)[1][2:4] == [SEED_USER, "home"]
    listed = cli.run("token", "list", "--user", SEED_USER)
    rows = table_rows(listed.out)
    assert rows[0] == ["jti", "user", "workspace", "id", "expires"]
    assert [row[1:4] for row in rows[1:]] == [[SEED_USER, SEED_USER, "1"]]
    assert rows[1][4] != "never"  # --expires 1h


def test_the_guides_node_token_reports_a_node(cli: Cli, api: ApiProcess) -> None:
    token = cli.create_token("node", "node", "1")
    out = report_node(api, token, "node1", node_report(cpus=2))
    assert out["status"] == "READY"
    # the node user may report, not read workloads
    refused = cli.run("get", "wk", env={"DORA_TOKEN": token}, expect=1)
    assert len(refused.err_lines) == 1 and refused.err.startswith("error: ")


def test_revoke_makes_the_token_fail_with_one_line(cli: Cli) -> None:
    token = cli.create_token(SEED_USER, SEED_USER, "revoke-me")
    cli.run("get", "vol", env={"DORA_TOKEN": token})
    rows = table_rows(cli.run("token", "list", "--user", SEED_USER).out)
    jti = next(row[0] for row in rows[1:] if row[3] == "revoke-me")
    assert cli.run("token", "revoke", jti).lines == [f"token {jti} of {SEED_USER} revoked"]
    failed = cli.run("get", "vol", env={"DORA_TOKEN": token}, expect=1)
    assert failed.out == ""
    assert failed.err_lines == ["error: invalid token: revoked"]
    # --debug shows the whole story (still without the token)
    debug = cli.run("get", "vol", "--debug", env={"DORA_TOKEN": token}, expect=1)
    assert "Traceback" in debug.err
    assert "dora.client.errors.Unauthorized: invalid token: revoked" in debug.err
    again = cli.run("token", "revoke", jti, expect=1)
    assert len(again.err_lines) == 1


def test_token_create_errors_are_one_line(cli: Cli, api: ApiProcess) -> None:
    ghost = cli.run("token", "create", "ghost", "ghost", "1", expect=1)
    assert ghost.out == ""
    assert ghost.err_lines == ["error: user 'ghost' does not exist"]
    bad = cli.run("token", "create", SEED_USER, SEED_USER, "1", "--expires", "soon", expect=2)
    assert bad.err_lines == ["error: --expires takes a duration like 30m, 12h, 90d (got 'soon')"]
    # a user may not create tokens for someone else
    with api.client(api.admin_token()) as admin:
        plain = user_with_role(admin, "plain", {"Workload": ["Get"]}, workspace=SEED_USER)
    forbidden = cli.run(
        "token", "create", SEED_USER, SEED_USER, "2", env={"DORA_TOKEN": plain.token}, expect=1
    )
    assert forbidden.out == ""
    assert len(forbidden.err_lines) == 1
    assert forbidden.err.startswith("error: ") and "Traceback" not in forbidden.err
