"""Who may open a shell or read logs, and what a node's :3001 server accepts.

On the node: only a ticket signed by the API's key, for this node, for this route's
operation, naming a container (and uid) assigned here, not expired and not used
before. On the API: RBAC in the container's own workspace, the Bearer token checked
on the WebSocket too, cross-site Origins refused, and a node whose certificate does
not match the fingerprint its agent reported is never sent a request (so never a
ticket). No token or ticket ends up in a log."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from dora.auth.tickets import issue_ticket, signing_key
from dora.client import Client, Forbidden, NotFound, Unauthorized
from dora.client.errors import ServerError
from dora.exec_protocol import EOF_FRAME
from dora.node.server import TlsIdentity, self_signed
from dora.store import Key, Patch, Store
from tests.helpers import (
    SECRET,
    ZONE,
    apply_many,
    doc,
    leaked_tokens,
    make_token,
    remember,
    unique,
    wait_until,
    with_store,
)
from tests.integration.exec_fixtures import ExecEnv, exec_env_fixture
from tests.integration.node_fixtures import WORKSPACE

env = exec_env_fixture()
SCOPE = {"zone": ZONE, "workspace": WORKSPACE}


@pytest.fixture(scope="module")
def target(env: ExecEnv) -> tuple[str, str]:
    """A running container: (name, uid)."""
    name = env.run_container("sleep 3600")
    with env.client("admin") as dora:
        uid = dora.get("container", name, **SCOPE).uid
    return name, uid


# ------------------------------------------------------------------------------ the node


def ticket(
    env: ExecEnv,
    name: str,
    uid: str,
    *,
    op: str = "logs",
    node: str | None = None,
    key: Ed25519PrivateKey | None = None,
    now: float | None = None,
    argv: tuple[str, ...] = ("echo", "hi"),
) -> str:
    return remember(
        issue_ticket(
            key or signing_key(SECRET),
            zone=ZONE,
            node=node or env.node.name,
            op=op,  # type: ignore[arg-type]
            workspace=WORKSPACE,
            name=name,
            uid=uid,
            user="tester",
            now=time.time() if now is None else now,
            argv=argv if op == "exec" else (),
        )
    )


def node_get(env: ExecEnv, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(verify=False, timeout=10) as http:  # noqa: S501 - we play the attacker
        return http.get(f"https://127.0.0.1:{env.node.port}{path}", headers=headers)


def node_exec(env: ExecEnv, token: str | None) -> tuple[int, Any]:
    """(HTTP status of the refused upgrade, its JSON body), or (101, frames) when the
    node ran the command."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with connect(
            f"wss://127.0.0.1:{env.node.port}/v1/exec",
            ssl=context,
            additional_headers=headers,
            open_timeout=10,
        ) as ws:
            ws.send(EOF_FRAME)
            return 101, list(ws)
    except InvalidStatus as exc:
        return exc.response.status_code, json.loads(exc.response.body or b"{}")


def test_node_runs_a_valid_ticket_once(env: ExecEnv, target: tuple[str, str]) -> None:
    """The control for every refusal below: a good ticket works, exactly once."""
    name, uid = target
    good = ticket(env, name, uid, op="exec")
    status, frames = node_exec(env, good)
    assert status == 101
    assert frames == [b"\x01hi\n", '{"exit": 0}']
    status, body = node_exec(env, good)
    assert status == 401 and "already used" in body["message"]
    logs = ticket(env, name, uid, op="logs")
    assert node_get(env, "/v1/logs", logs).status_code == 200
    assert node_get(env, "/v1/logs", logs).status_code == 401


def test_node_refuses_requests_without_a_ticket(env: ExecEnv) -> None:
    for path in ("/v1/logs", "/v1/stats"):
        r = node_get(env, path, None)
        assert r.status_code == 401, r.text
        assert "missing ticket" in r.json()["message"]
    assert node_exec(env, None)[0] == 401
    # Plain HTTP is not spoken at all.
    with (
        httpx.Client(timeout=5) as http,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)),
    ):
        http.get(f"http://127.0.0.1:{env.node.port}/v1/logs")


def test_node_refuses_tickets_for_anything_else(env: ExecEnv, target: tuple[str, str]) -> None:
    name, uid = target
    api_token = env.tokens["dev"]
    cases = {
        "an API token": (api_token, 401, "malformed"),
        "another container": (ticket(env, "other.1", uid), 404, "not on this node"),
        "another uid of the same name": (ticket(env, name, "0" * 32), 404, "not on this node"),
        "another node": (ticket(env, name, uid, node="node-x"), 401, "another node"),
        "an expired ticket": (ticket(env, name, uid, now=time.time() - 120), 401, "expired"),
        "a stranger's key": (
            ticket(env, name, uid, key=Ed25519PrivateKey.generate()),
            401,
            "bad signature",
        ),
        "another operation": (ticket(env, name, uid, op="stats"), 403, "for stats"),
        "garbage": ("not-a-ticket", 401, "malformed"),
    }
    for what, (token, status, words) in cases.items():
        r = node_get(env, "/v1/logs", token)
        assert (r.status_code, words in r.json()["message"]) == (status, True), (what, r.text)
    status, body = node_exec(env, ticket(env, name, uid, op="logs"))
    assert status == 403 and "for logs" in body["message"]
    status, body = node_exec(env, ticket(env, name, "f" * 32, op="exec"))
    assert status == 404


# ------------------------------------------------------------------------------ the API


def api_ws(env: ExecEnv, name: str, headers: dict[str, str], **query: str) -> tuple[int, Any]:
    from urllib.parse import urlencode

    url = env.api.url.replace("http://", "ws://") + f"/v1/containers/{name}/shell"
    params = {"cmd": "true", **query}
    try:
        with connect(f"{url}?{urlencode(params)}", additional_headers=headers) as ws:
            ws.send(EOF_FRAME)
            return 101, list(ws)
    except InvalidStatus as exc:
        return exc.response.status_code, json.loads(exc.response.body or b"{}")


def test_api_shell_needs_a_valid_token(env: ExecEnv, target: tuple[str, str]) -> None:
    name, _ = target
    assert api_ws(env, name, {}, **SCOPE)[0] == 401
    assert api_ws(env, name, {"Authorization": "Bearer nonsense"}, **SCOPE)[0] == 401
    good = {"Authorization": f"Bearer {env.tokens['dev']}"}
    status, frames = api_ws(env, name, good, **SCOPE)
    assert (status, frames[-1]) == (101, '{"exit": 0}')


def test_api_refuses_cross_site_websockets(env: ExecEnv, target: tuple[str, str]) -> None:
    name, _ = target
    auth = {"Authorization": f"Bearer {env.tokens['dev']}"}
    status, body = api_ws(env, name, {**auth, "Origin": "https://evil.example"}, **SCOPE)
    assert status == 403 and "cross-site" in body["message"]
    same = env.api.url
    assert api_ws(env, name, {**auth, "Origin": same}, **SCOPE)[0] == 101


def test_users_of_another_workspace_get_no_shell_and_no_logs(
    env: ExecEnv, target: tuple[str, str]
) -> None:
    name, _ = target
    with env.client("other") as dora:
        with pytest.raises(Forbidden):
            dora.exec(name, ["id"], **SCOPE)
        with pytest.raises(Forbidden):
            list(dora.logs(name, **SCOPE))
        with pytest.raises(NotFound):  # in their own workspace there is no such container
            dora.exec(name, ["id"], zone=ZONE)
    done = env.dora("shell", "c", name, "-g", WORKSPACE, "-z", ZONE, "--", "id", user="other")
    assert done.returncode == 1 and b"may not Shell Container" in done.stderr, done.stderr


def test_users_without_shell_or_log_verbs_get_403(env: ExecEnv, target: tuple[str, str]) -> None:
    name, _ = target
    with env.client("viewer") as dora:
        assert dora.get("container", name, **SCOPE).name == name  # may read the record
        with pytest.raises(Forbidden, match="Shell"):
            dora.exec(name, ["id"], **SCOPE)
        with pytest.raises(Forbidden, match="Log"):
            list(dora.logs(name, **SCOPE))
    with env.http("viewer") as http:
        assert http.get(f"/v1/containers/{name}/stats", params=SCOPE).status_code == 200
    with env.http("other") as http:
        assert http.get(f"/v1/containers/{name}/stats", params=SCOPE).status_code == 403


# ------------------------------------------------------------------------------ pinning


class Impostor:
    """A TLS server with a certificate of its own; records what each connection sent
    after the handshake."""

    def __init__(self, identity: TlsIdentity) -> None:
        self.identity = identity
        self.context = identity.server_context()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError), raw:
                raw.settimeout(3)
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self.handshakes += 1
                    data = bytearray()
                    with contextlib.suppress(OSError):
                        while b"\r\n\r\n" not in data:
                            chunk = tls.recv(65536)
                            if not chunk:
                                break
                            data.extend(chunk)
                    self.received.append(bytes(data))

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def impostor() -> Iterator[Impostor]:
    server = Impostor(self_signed("impostor"))
    yield server
    server.close()


def _pose_as_node(env: ExecEnv, port: int, fingerprint: str) -> tuple[str, str]:
    """A Node whose endpoint is the impostor, with `fingerprint` as if its agent had
    reported it, and a 'running' container placed on it; (node, container)."""
    node = unique("pinned")
    spec = {"endpoint": f"https://127.0.0.1:{port}", "allow": ["CPUWorkload"]}
    apply_many(env.cluster.admin, [doc("Node", node, spec, zone=ZONE)])
    set_fingerprint(env, node, fingerprint)
    name = f"{unique('pin')}.1"
    env.cluster.put(node, name)
    env.cluster.update(name, observed={"state": "running", "uid": "", "container_id": "x"})
    return node, name


def set_fingerprint(env: ExecEnv, node: str, fingerprint: str) -> None:
    key = Key("Node", ZONE, "", node)

    async def write(store: Store) -> None:
        record = await store.get(key)
        observed = {"endpoint_fingerprint": fingerprint, "last_seen": time.time()}
        await store.update(
            key, Patch(observed=observed), expected_version=record.version, actor="test"
        )

    with_store(env.api, write)


def test_api_refuses_a_node_whose_certificate_changed(env: ExecEnv, impostor: Impostor) -> None:
    expected = self_signed("the-real-node").fingerprint  # what the node's agent reported
    node, name = _pose_as_node(env, impostor.port, expected)
    with env.client("dev") as dora:
        with pytest.raises(ServerError, match="does not match the fingerprint") as shell:
            dora.exec(name, ["id"], **SCOPE)
        assert shell.value.status == 502 and shell.value.code == "node_identity"
        with pytest.raises(ServerError, match="does not match the fingerprint"):
            list(dora.logs(name, **SCOPE))
    wait_until(lambda: impostor.handshakes >= 2, within=5, what="the TLS handshakes")
    assert impostor.received and not any(impostor.received), impostor.received
    assert "event=node_fingerprint_mismatch" in env.api.log_text()

    # Control: with the impostor's own fingerprint pinned, the API does send it the
    # request — so the refusal above was the pin at work, not a broken connection.
    set_fingerprint(env, node, impostor.identity.fingerprint)
    with env.client("dev") as dora, pytest.raises(ServerError):
        dora.exec(name, ["id"], **SCOPE)  # the impostor answers nothing useful
    wait_until(lambda: any(impostor.received), within=5, what="a request to the impostor")
    request = next(r for r in impostor.received if r).decode("latin-1")
    assert request.startswith("GET /v1/exec ")
    captured = request.split("Authorization: Bearer ", 1)[1].split("\r\n", 1)[0]
    remember(captured)  # a real ticket minted by the API: it must not be in any log
    header = json.loads(_b64(captured.split(".")[0]))
    assert header["alg"] == "EdDSA"
    claims = json.loads(_b64(captured.split(".")[1]))
    assert claims["aud"] == f"dora-node:{ZONE}/{node}"
    assert claims["ctr"]["name"] == name and claims["argv"] == ["id"]
    assert claims["exp"] - claims["iat"] <= 30


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_api_without_a_reported_fingerprint_refuses(env: ExecEnv, impostor: Impostor) -> None:
    _, name = _pose_as_node(env, impostor.port, "")
    with env.client("dev") as dora, pytest.raises(ServerError, match="not reported") as err:
        dora.exec(name, ["id"], **SCOPE)
    assert err.value.status == 503
    assert impostor.handshakes == 0


def test_revoked_user_token_cannot_open_a_shell(env: ExecEnv, target: tuple[str, str]) -> None:
    name, _ = target
    token = make_token(env.cluster.admin, "exec-dev", WORKSPACE, "revoked")
    with Client(env.api.url, token.token) as dora:
        assert dora.exec(name, ["true"], **SCOPE).exit_code == 0
        assert env.cluster.admin.delete(f"/v1/tokens/{token.jti}").status_code == 200
        with pytest.raises(Unauthorized, match="revoked"):
            dora.exec(name, ["true"], **SCOPE)


def test_no_token_or_ticket_in_any_log(env: ExecEnv) -> None:
    """Runs last in this module: every token and ticket the tests saw or captured."""
    api_log = env.api.log_text()
    printed = env.api.admin_tokens_printed()
    assert not leaked_tokens(api_log, admin_token=printed[0] if printed else None)
    assert not leaked_tokens(env.node.agent.log_text())
    assert "eyJ" not in env.node.agent.log_text()
