"""The shell wire protocol's pure parts, the node certificate and the API's endpoint
parsing."""

from __future__ import annotations

import hashlib
import ssl
import struct
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dora.api.services.exec import endpoint_base
from dora.client.exec import logs_params, shell_url
from dora.exec_protocol import (
    DockerDemux,
    ProtocolError,
    check_argv,
    check_tail,
    parse_control,
    parse_since,
)
from dora.node.server import cert_fingerprint, self_signed

NOW = 1_800_000_000.0


def test_control_frames() -> None:
    assert parse_control('{"resize": [120, 40]}').resize == (120, 40)
    assert parse_control('{"eof": true}').eof
    for bad in (
        "not json",
        "[]",
        "{}",
        '{"resize": [0, 40]}',
        '{"resize": [120]}',
        '{"resize": [true, 40]}',
        '{"resize": [120, 40], "x": 1}',
        '{"eof": false}',
        '{"exit": 0}',
    ):
        with pytest.raises(ProtocolError):
            parse_control(bad)


def test_argv_limits() -> None:
    assert check_argv(["sh", "-c", "echo hi"]) == ["sh", "-c", "echo hi"]
    for bad in ([], [""], ["a\0b"], ["x"] * 257, ["x" * 5000]):
        with pytest.raises(ProtocolError):
            check_argv(bad)


def test_tail() -> None:
    assert check_tail(None) == "all"
    assert check_tail("ALL") == "all"
    assert check_tail(10) == "10"
    assert check_tail("007") == "7"
    for bad in ("-1", "ten", "1e3"):
        with pytest.raises(ProtocolError):
            check_tail(bad)


def test_since() -> None:
    assert parse_since("10m", NOW) == NOW - 600
    assert parse_since("1h30m", NOW) == NOW - 5400
    assert parse_since("2d", NOW) == NOW - 2 * 86400
    assert parse_since("45s", NOW) == NOW - 45
    assert parse_since("1700000000", NOW) == 1_700_000_000.0
    when = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
    assert parse_since("2024-05-01T10:00:00Z", NOW) == when
    for bad in ("", "yesterday", "10x"):
        with pytest.raises(ProtocolError):
            parse_since(bad, NOW)


def test_docker_demux_handles_split_frames() -> None:
    def chunk(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(data)) + data

    raw = chunk(1, b"out\n") + chunk(2, b"err\n") + chunk(1, b"")
    demux = DockerDemux()
    got = []
    for i in range(len(raw)):
        got += demux.feed(raw[i : i + 1])
    assert got == [(1, b"out\n"), (2, b"err\n"), (1, b"")]


def test_self_signed_certificate_and_fingerprint() -> None:
    identity = self_signed("node1")
    cert = x509.load_pem_x509_certificate(identity.cert_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert identity.fingerprint == hashlib.sha256(der).hexdigest()
    assert cert_fingerprint(identity.cert_pem) == identity.fingerprint
    assert isinstance(identity.server_context(), ssl.SSLContext)
    assert self_signed("node1").fingerprint != identity.fingerprint  # a fresh key each time


def test_endpoint_base_always_uses_tls() -> None:
    assert endpoint_base("https://127.0.0.22:3001") == "https://127.0.0.22:3001"
    assert endpoint_base("http://node1") == "https://node1:3001"
    assert endpoint_base("127.0.0.1:4001") == "https://127.0.0.1:4001"
    assert endpoint_base("https://[::1]:4001/x") == "https://[::1]:4001"
    with pytest.raises(ValueError):
        endpoint_base("")


def test_client_urls() -> None:
    url = shell_url(
        "https://api:3000/", "web.1", argv=["sh", "-c", "a b"], tty=True, zone=None, workspace="w"
    )
    assert (
        url == "wss://api:3000/v1/containers/web.1/shell?cmd=sh&cmd=-c&cmd=a+b&tty=true&workspace=w"
    )
    assert shell_url("http://a", "x/y", argv=None, tty=False, zone=None, workspace=None) == (
        "ws://a/v1/containers/x%2Fy/shell"
    )
    params = logs_params(
        zone=None, workspace="w", follow=True, tail=5, since="10m", timestamps=False
    )
    assert params["tail"] == "5" and params["workspace"] == "w" and params["follow"] is True
    assert isinstance(params["since"], float)
