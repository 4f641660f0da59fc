"""The agent against an API with a self-signed certificate: it verifies by default,
trusts the certificate given in ``DORA_API_CA``, and accepts any with
``DORA_INSECURE_API=true``."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ApiProcess, remember, self_signed, wait_until
from tests.integration.node_fixtures import (
    READY_S,
    NodeCluster,
    setup_cluster,
    teardown_cluster,
)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeCluster, Path]]:
    data_dir = tmp_path_factory.mktemp("node-api-tls")
    cert, key = self_signed(data_dir)
    env = {"DORA_TLS_CERT": str(cert), "DORA_TLS_KEY": str(key), "DORA_NODE_READY_S": str(READY_S)}
    api = ApiProcess(data_dir, env=env)
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
        token = remember(api.admin_token())
        admin = httpx.Client(
            base_url=api.url,
            headers={"Authorization": f"Bearer {token}"},
            verify=trust,
            timeout=30,
        )
        cluster = setup_cluster(api, data_dir, admin=admin)
        try:
            yield cluster, cert
        finally:
            teardown_cluster(cluster)
    finally:
        api.stop(timeout=2)


def test_self_signed_api_needs_its_ca_or_insecure(tls_cluster: tuple[NodeCluster, Path]) -> None:
    cluster, cert = tls_cluster
    strict, with_ca, insecure = (cluster.add_node(p) for p in ("strict", "ca", "insecure"))
    refused = cluster.agent(strict)
    trusting = cluster.agent(with_ca, DORA_API_CA=str(cert))
    careless = cluster.agent(insecure, DORA_INSECURE_API="true")
    cluster.wait_ready(with_ca, trusting)
    cluster.wait_ready(insecure, careless)
    wait_until(
        lambda: (
            "CERTIFICATE_VERIFY_FAILED" in refused.log_text()
            or "certificate verify failed" in refused.log_text()
        ),
        within=15,
        what="a certificate error",
    )
    assert refused.alive()
    assert cluster.node_status(strict).startswith("NOT_READY")
