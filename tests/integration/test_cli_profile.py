"""`dora profile …` and how every command picks its server and token: the profiles file
(0600 in a 0700 folder), `--profile`, and the DORA_PROFILE / DORA_API_SERVER /
DORA_TOKEN overrides — driven as a subprocess against a real API server."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli_fixtures import SERVER_ENV, Cli
from tests.helpers import ApiProcess, free_port, server_fixture

api = server_fixture(name="cli-profile", env=SERVER_ENV)


@pytest.fixture(scope="module")
def admin_token(api: ApiProcess) -> str:
    return api.admin_token()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


@pytest.fixture(scope="module", autouse=True)
def _no_token_printed() -> Iterator[list[Cli]]:
    """Every Cli of this module is checked for printed tokens at the end."""
    clis: list[Cli] = []
    yield clis
    for c in clis:
        c.assert_no_token_leaks()


@pytest.fixture(autouse=True)
def _track(cli: Cli, _no_token_printed: list[Cli]) -> None:
    _no_token_printed.append(cli)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_an_owner_only_file_and_keeps_other_profiles(
    cli: Cli, api: ApiProcess, admin_token: str
) -> None:
    first = cli.run("profile", "init", "a", "--api-server", api.url, "--token", admin_token)
    assert first.lines == [f"profile a saved in {cli.config} and in use"]
    assert _mode(cli.config) == 0o600
    assert _mode(cli.config.parent) == 0o700
    cli.run("profile", "init", "b", "-s", "https://127.0.0.9:3000/", "-t", "other-token")
    assert _mode(cli.config) == 0o600
    data = yaml.safe_load(cli.config.read_text())
    assert data["current"] == "b"
    assert set(data["profiles"]) == {"a", "b"}
    assert data["profiles"]["a"]["server"] == api.url
    assert data["profiles"]["a"]["token"] == admin_token
    assert data["profiles"]["b"]["server"] == "https://127.0.0.9:3000"  # trailing / dropped


def test_init_keeps_0600_under_a_permissive_umask_and_an_old_0644_file(
    cli: Cli, api: ApiProcess, admin_token: str
) -> None:
    cli.config.parent.mkdir(mode=0o700)
    cli.config.write_text("current: null\nprofiles: {}\n")
    cli.config.chmod(0o644)
    old = os.umask(0)
    try:
        cli.run("profile", "init", "a", "--api-server", api.url, "--token", admin_token)
    finally:
        os.umask(old)
    assert _mode(cli.config) == 0o600


def test_list_use_delete(cli: Cli, api: ApiProcess, admin_token: str) -> None:
    assert cli.run("profile", "list").lines == [
        "no profiles yet: dora profile init NAME --api-server URL --token TOKEN"
    ]
    cli.run("profile", "init", "a", "--api-server", api.url, "--token", admin_token)
    cli.run("profile", "init", "b", "--api-server", "http://127.0.0.9:1", "--token", "tb")
    listed = cli.run("profile", "list")
    assert listed.lines == [f"  a  {api.url}", "* b  http://127.0.0.9:1"]
    assert cli.run("profile", "use", "a").lines == ["using profile a"]
    assert cli.run("profile", "list").lines[0] == f"* a  {api.url}"
    # the current profile is the one commands use
    assert "zone  dora-cluster-1" in cli.run("get", "zone").out
    assert cli.run("profile", "delete", "b").lines == ["profile b deleted"]
    assert cli.run("profile", "list").lines == [f"* a  {api.url}"]

    unknown = cli.run("profile", "use", "nope", expect=2)
    assert unknown.err == "error: no profile named 'nope'\n"
    assert cli.run("profile", "delete", "nope", expect=2).err_lines == [
        "error: no profile named 'nope'"
    ]
    cli.run("profile", "delete", "a")
    missing = cli.run("get", "zone", expect=2)
    assert missing.err_lines == [
        "error: no API server configured: run `dora profile init NAME --api-server URL "
        "--token TOKEN`, or set DORA_API_SERVER and DORA_TOKEN"
    ]


def test_init_refuses_a_server_without_scheme(cli: Cli) -> None:
    result = cli.run("profile", "init", "a", "--api-server", "127.0.0.1:3000", "-t", "x", expect=2)
    assert result.err_lines == ["error: --api-server must start with http:// or https://"]
    assert not cli.config.exists()


def test_a_broken_profiles_file_is_one_line_and_exit_2(cli: Cli) -> None:
    cli.config.parent.mkdir(mode=0o700)
    cli.config.write_text("current: [unclosed\n")
    for argv in (("profile", "list"), ("profile", "use", "a"), ("get", "nodes")):
        result = cli.run(*argv, expect=2)
        assert len(result.err_lines) == 1, str(result)
        assert result.err.startswith(f"error: {cli.config} is not valid YAML"), str(result)
        assert "Traceback" not in result.err
    cli.config.write_text("profiles: [a, b]\n")
    result = cli.run("profile", "list", expect=2)
    assert result.err_lines == [
        f"error: {cli.config}: 'profiles' must be a mapping of name to profile"
    ]


def test_profile_flag_picks_a_profile_for_one_command(
    cli: Cli, api: ApiProcess, admin_token: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    cli.run("profile", "init", "good", "--api-server", api.url, "--token", admin_token)
    cli.run("profile", "init", "dead", "--api-server", dead, "--token", admin_token)
    refused = cli.run("get", "zone", expect=1)
    assert refused.err_lines[0].startswith(f"error: cannot reach the Dora API at {dead}")
    ok = cli.run("get", "zone", "--profile", "good")
    assert ok.lines[2].startswith("zone  dora-cluster-1")
    assert cli.run("get", "zone", "--profile", "nope", expect=2).err_lines == [
        "error: no profile named 'nope' (profiles: dead, good)"
    ]
    # DORA_PROFILE picks one too; --profile wins over it
    cli.run("get", "zone", env={"DORA_PROFILE": "good"})
    cli.run("get", "zone", "--profile", "dead", env={"DORA_PROFILE": "good"}, expect=1)


def test_env_overrides_server_and_token(cli: Cli, api: ApiProcess, admin_token: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    cli.run("profile", "init", "p", "--api-server", dead, "--token", "not-a-token")
    # DORA_API_SERVER replaces the profile's server; the profile's bad token is used
    bad = cli.run("get", "zone", env={"DORA_API_SERVER": api.url}, expect=1)
    assert bad.err_lines == ["error: invalid token: malformed token"]
    # DORA_TOKEN replaces the profile's token as well
    both = {"DORA_API_SERVER": api.url, "DORA_TOKEN": admin_token}
    assert "dora-cluster-1" in cli.run("get", "zone", env=both).out
    # and both work with no profiles file at all
    cli.config.unlink()
    assert "dora-cluster-1" in cli.run("get", "zone", env=both).out
    assert not cli.config.exists()
