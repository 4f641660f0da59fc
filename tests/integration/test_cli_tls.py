"""The CLI against an API with a self-signed certificate: refused by default with one
readable line, accepted with `--insecure`, with `--ca-cert FILE`, or with a profile
that remembers either (and `dora version` honours the profile's CA too)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dora.client import Client, ConnectionFailed
from tests.cli_fixtures import SERVER_ENV, Cli
from tests.helpers import ApiProcess, remember, self_signed, wait_until


@pytest.fixture(scope="module")
def tls_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, Path]]:
    data_dir = tmp_path_factory.mktemp("cli-tls")
    cert, key = self_signed(data_dir)
    api = ApiProcess(
        data_dir, env={**SERVER_ENV, "DORA_TLS_CERT": str(cert), "DORA_TLS_KEY": str(key)}
    )
    api.url = f"https://127.0.0.1:{api.port}"
    api.start()
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=api.url, verify=trust, timeout=2) as probe:

            def ready() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return probe.get("/readyz").status_code == 200
                return False

            wait_until(ready, within=30, what="the HTTPS API")
        remember(api.admin_token())
        yield api, cert
    finally:
        api.stop()


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    c = Cli(tmp_path_factory.mktemp("cli-tls-home"))
    yield c
    c.assert_no_token_leaks()


def test_self_signed_needs_its_ca_or_insecure(cli: Cli, tls_api: tuple[ApiProcess, Path]) -> None:
    api, cert = tls_api
    cli.login(api, api.admin_token(), "plain")
    refused = cli.run("get", "zone", expect=1)
    assert refused.out == ""
    assert len(refused.err_lines) == 1, str(refused)
    assert refused.err.startswith(f"error: cannot reach the Dora API at {api.url}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in refused.err
    assert "--ca-cert" in refused.err and "--insecure" in refused.err  # the way out
    assert "dora-cluster-1" in cli.run("get", "zone", "--insecure").out
    assert "dora-cluster-1" in cli.run("get", "zone", "--ca-cert", str(cert)).out
    missing = cli.run("get", "zone", "--ca-cert", str(cert) + ".missing", expect=2)
    assert missing.err.startswith(f"error: cannot use the CA bundle {cert}.missing: ")
    assert len(missing.err_lines) == 1


def test_a_profile_remembers_the_ca(cli: Cli, tls_api: tuple[ApiProcess, Path]) -> None:
    api, cert = tls_api
    token = api.admin_token()
    cli.run("profile", "init", "ca", "-s", api.url, "-t", token, "--ca-cert", str(cert))
    assert "dora-cluster-1" in cli.run("get", "zone").out
    assert cli.run("version").lines[1].startswith("server  ")
    cli.run("profile", "init", "insecure", "-s", api.url, "-t", token, "--insecure")
    assert "dora-cluster-1" in cli.run("get", "zone").out
    assert cli.run("version").lines[1].startswith("server  ")


def test_sdk_verifies_by_default(tls_api: tuple[ApiProcess, Path]) -> None:
    api, cert = tls_api
    with Client(api.url) as default, pytest.raises(ConnectionFailed):
        default.version()
    with Client(api.url, verify=str(cert)) as trusted:
        assert trusted.version().zone == "dora-cluster-1"
    with Client(api.url, verify=False) as insecure:
        assert insecure.version().zone == "dora-cluster-1"
