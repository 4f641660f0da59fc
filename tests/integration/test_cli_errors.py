"""Errors as a user sees them, as a subprocess against a real API server: one readable
line on stderr and a meaningful exit status (1: refused or failed, 2: bad usage),
`--debug` for the traceback, a clear line when the server cannot be reached, and
`dora version` with the client's and the server's versions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dora import __version__
from tests.cli_fixtures import SERVER_ENV, Cli
from tests.helpers import (
    SEED_USER,
    ZONE,
    ApiProcess,
    apply_seed,
    free_port,
    server_fixture,
    user_with_role,
)

api = server_fixture(name="cli-errors", env=SERVER_ENV)


@pytest.fixture(scope="module")
def cli(api: ApiProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    admin_token = api.admin_token()
    with api.client(admin_token) as admin:
        apply_seed(admin)
    c = Cli(tmp_path_factory.mktemp("cli-errors-home"))
    c.login(api, admin_token)
    yield c
    c.assert_no_token_leaks()


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def test_version_prints_client_and_server(cli: Cli, api: ApiProcess) -> None:
    assert cli.run("version").lines == [
        f"client  {__version__}",
        f"server  {__version__}  ({api.url}, zone {ZONE})",
    ]
    assert cli.run("version", "--client").lines == [f"client  {__version__}"]


def test_an_unreachable_server_is_one_clear_line(cli: Cli) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"DORA_API_SERVER": dead}
    refused = cli.run("get", "nodes", env=env, expect=1)
    assert refused.out == ""
    assert _one_line(refused.err) == (
        f"error: cannot reach the Dora API at {dead}: [Errno 111] Connection refused"
    )
    # apply stops at the first such error instead of repeating it per document
    seed = "".join(
        f"---\napiVersion: v1\nkind: Workspace\nmetadata: {{name: {name}}}\n" for name in "abc"
    )
    applied = cli.run("apply", "-f", "-", stdin=seed, env=env, expect=1)
    assert _one_line(applied.err).startswith(f"error: cannot reach the Dora API at {dead}")
    version = cli.run("version", env=env, expect=1)
    assert version.lines == [f"client  {__version__}"]
    assert _one_line(version.err).startswith("error: server version unknown: cannot reach")


def test_refusals_are_one_line_with_exit_1(cli: Cli, api: ApiProcess) -> None:
    missing = cli.run("get", "wk", "nope", "-g", SEED_USER, expect=1)
    assert _one_line(missing.err) == f"error: Workload {ZONE}/{SEED_USER}/nope not found"
    with api.client(api.admin_token()) as admin:
        reader = user_with_role(admin, "reader", {"Workload": ["Get"]}, workspace=SEED_USER)
    forbidden = cli.run("get", "nodes", env={"DORA_TOKEN": reader.token}, expect=1)
    assert forbidden.out == ""
    assert _one_line(forbidden.err) == f"error: user reader may not Get Node in zone {ZONE}"
    invalid = cli.run("get", "wk", env={"DORA_TOKEN": "not.a.token"}, expect=1)
    assert _one_line(invalid.err) == "error: invalid token: malformed token"
    # no token at all (a profile without one is possible with env overrides)
    anonymous = cli.run(
        "get", "wk", env={"DORA_API_SERVER": api.url, "DORA_CONFIG": "/nonexistent"}, expect=1
    )
    assert _one_line(anonymous.err) == (
        "error: missing token: send 'Authorization: Bearer <token>'"
    )


def test_debug_shows_the_traceback(cli: Cli) -> None:
    plain = cli.run("describe", "wk", "nope", "-g", SEED_USER, expect=1)
    assert "Traceback" not in plain.err
    for extra, env in ((("--debug",), None), ((), {"DORA_DEBUG": "1"})):
        debug = cli.run("describe", "wk", "nope", "-g", SEED_USER, *extra, env=env, expect=1)
        assert "Traceback (most recent call last)" in debug.err
        assert "dora.client.errors.NotFound: Workload" in debug.err


def test_usage_errors_exit_2(cli: Cli) -> None:
    unknown_kind = cli.run("describe", "gadget", "x", expect=2)
    assert _one_line(unknown_kind.err).startswith("error: unknown kind 'gadget'")
    typo = cli.run("get", "workloda", expect=2)
    assert "did you mean 'Workload'?" in typo.err
    for argv in (("get",), ("frobnicate",), ("get", "nodes", "--no-such-flag")):
        result = cli.run(*argv, expect=2)
        assert "Traceback" not in result.err
        assert "Usage:" in result.err or "Error" in result.err


def test_every_command_answers_help_quickly_with_an_example(cli: Cli) -> None:
    # the in-process walk over every command is in tests/unit/test_cli_help.py;
    # here: the installed entry point really prints it, without a server or profile
    result = cli.run("get", "--help", env={"DORA_CONFIG": "/nonexistent"})
    assert "Example" in result.out
    assert "dora get nodes" in result.out
