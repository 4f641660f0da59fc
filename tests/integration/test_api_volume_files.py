"""Volume file routes over a real socket: paths that try to leave the volume, links
planted inside it, workspace isolation, concurrent downloads, the upload protocol's
edges and limits, and NFS storage reached through ``DORA_STORAGE_MOUNTS``.

Volumes live on a Local storage rooted at a temporary folder (``<root>/<ws>/<vol>``,
the rule the node agents bind-mount), and on an NFS storage whose "mounted export" is
a plain folder named by ``DORA_STORAGE_MOUNTS``.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dora.client import AsyncClient
from tests.cli_fixtures import SERVER_ENV
from tests.helpers import (
    ZONE,
    ApiProcess,
    apply_many,
    doc,
    grant,
    local_storage_doc,
    make_token,
    unique,
    user_doc,
    wait_until,
)

TEAM_A, TEAM_B = "team-a", "team-b"
MAX_FILE_MB, MAX_CHUNK_MB = 4, 1
MB = 1024 * 1024


@dataclass
class Env:
    api: ApiProcess
    admin: httpx.Client
    alice: httpx.Client
    """The admin guide's ``user`` role in team-a only."""
    local: Path
    """The Local storage's root."""
    export: Path
    """Where the NFS storage's export is "mounted" on the API host."""
    outside: Path
    """A folder outside every volume, holding a secret."""

    def vol(self, name: str, workspace: str = TEAM_A) -> Path:
        return self.local / workspace / name


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    local = tmp_path_factory.mktemp("local-storage")
    export = tmp_path_factory.mktemp("nfs-export")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("top secret")
    settings = {
        **SERVER_ENV,
        "DORA_STORAGE_MOUNTS": f"nfs-store={export}",
        "DORA_UPLOAD_MAX_FILE_MB": str(MAX_FILE_MB),
        "DORA_UPLOAD_MAX_CHUNK_MB": str(MAX_CHUNK_MB),
    }
    with ApiProcess(tmp_path_factory.mktemp("vol-api"), env=settings, name="volumes") as api:
        api.wait_ready()
        with api.client(api.admin_token()) as admin:
            volumes = [("data", TEAM_A), ("empty", TEAM_A), ("trap", TEAM_A), ("other", TEAM_B)]
            apply_many(
                admin,
                [
                    doc("Zone", ZONE),
                    doc("Workspace", TEAM_A),
                    doc("Workspace", TEAM_B),
                    local_storage_doc("local-store", local),
                    doc(
                        "Storage",
                        "nfs-store",
                        {"endpoint": "127.0.0.31", "mountpath": "/exports/dora", "kind": "NFS"},
                        zone=ZONE,
                    ),
                    doc(
                        "Storage",
                        "nfs-elsewhere",
                        {"endpoint": "127.0.0.32", "mountpath": "/exports/x", "kind": "NFS"},
                        zone=ZONE,
                    ),
                    *[
                        doc("Volume", n, {"storage": "local-store"}, zone=ZONE, workspace=w)
                        for n, w in volumes
                    ],
                    doc("Volume", "nfsvol", {"storage": "nfs-store"}, zone=ZONE, workspace=TEAM_A),
                    doc(
                        "Volume",
                        "unmounted",
                        {"storage": "nfs-elsewhere"},
                        zone=ZONE,
                        workspace=TEAM_A,
                    ),
                    doc(
                        "Role",
                        "user",
                        {
                            "permission": {
                                "Volume": [
                                    "Get",
                                    "Describe",
                                    "Use",
                                    "Upload",
                                    "Download",
                                    "Ls",
                                    "Sync",
                                ]
                            }
                        },
                    ),
                    user_doc("alice", [grant("All", "user", workspace=TEAM_A)], workspace=TEAM_A),
                ],
            )
            with api.client(make_token(admin, "alice", TEAM_A).token) as alice:
                yield Env(api, admin, alice, local, export, outside)
        assert "Traceback" not in api.log_text()


def upload(
    c: httpx.Client,
    volume: str,
    path: str,
    data: bytes,
    mtime: float = 1.7e9,
    *,
    chunk: int = MB,
    **params: str,
) -> dict:
    """The whole protocol: POST, then PATCH chunks until complete."""
    r = c.post(
        f"/v1/volumes/{volume}/uploads",
        params=params,
        json={"path": path, "size": len(data), "mtime": mtime},
    )
    assert r.status_code == 200, r.text
    up = r.json()
    while not up["complete"]:
        offset = up["offset"]
        r = c.patch(
            f"/v1/volumes/{volume}/uploads/{up['id']}",
            params=params,
            headers={"Upload-Offset": str(offset)},
            content=data[offset : offset + chunk],
        )
        assert r.status_code == 200, r.text
        up = r.json()
    return up


def untar(data: bytes) -> dict[str, tarfile.TarInfo | bytes]:
    """name → bytes for files, the TarInfo for anything else."""
    out: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f else m
    return out


# ------------------------------------------------------------------- basics


def test_ls_of_a_volume_never_written_is_empty_and_a_missing_folder_is_404(env: Env) -> None:
    r = env.alice.get("/v1/volumes/empty/files")
    assert r.status_code == 200, r.text
    assert r.json()["items"] == []
    assert not env.vol("empty").exists()  # listing creates nothing
    missing = env.alice.get("/v1/volumes/empty/files", params={"path": "nope"})
    assert missing.status_code == 404
    upload(env.alice, "data", "seen/here.txt", b"x")
    r = env.alice.get("/v1/volumes/data/files", params={"path": "seen/nope"})
    assert r.status_code == 404
    assert "nope" in r.json()["message"]


def test_a_missing_volume_is_404_and_another_workspace_403(env: Env) -> None:
    r = env.alice.get("/v1/volumes/no-such-volume/files")
    assert r.status_code == 404
    assert "no-such-volume" in r.json()["message"]
    for method, route in (("GET", "files"), ("GET", "download"), ("GET", "manifest")):
        r = env.alice.request(method, f"/v1/volumes/other/{route}", params={"workspace": TEAM_B})
        assert r.status_code == 403, r.text
    r = env.alice.post(
        "/v1/volumes/other/uploads",
        params={"workspace": TEAM_B},
        json={"path": "x", "size": 1, "mtime": 1},
    )
    assert r.status_code == 403
    assert not env.vol("other", TEAM_B).exists()
    # The admin may, and the data lands in team-b's folder.
    upload(env.admin, "other", "b.txt", b"team b", workspace=TEAM_B)
    assert (env.vol("other", TEAM_B) / "b.txt").read_bytes() == b"team b"


def test_partial_uploads_are_invisible_until_complete(env: Env) -> None:
    data = os.urandom(MB + 100)
    r = env.alice.post(
        "/v1/volumes/data/uploads",
        json={"path": "part/file.bin", "size": len(data), "mtime": 1.6e9},
    )
    up = r.json()
    assert up["offset"] == 0 and not up["complete"]
    r = env.alice.patch(
        f"/v1/volumes/data/uploads/{up['id']}", headers={"Upload-Offset": "0"}, content=data[:MB]
    )
    assert r.json()["offset"] == MB
    listing = env.alice.get("/v1/volumes/data/files", params={"path": "part"}).json()
    assert listing["items"] == []
    root = [e["name"] for e in env.alice.get("/v1/volumes/data/files").json()["items"]]
    assert ".dora-uploads" not in root
    assert ".dora-uploads" not in str(env.alice.get("/v1/volumes/data/manifest").json())
    assert ".dora-uploads/x" not in str(untar(env.alice.get("/v1/volumes/data/download").content))
    # The same file again: the same id, and the offset the server holds.
    again = env.alice.post(
        "/v1/volumes/data/uploads",
        json={"path": "part/file.bin", "size": len(data), "mtime": 1.6e9},
    )
    assert again.json() == {**up, "offset": MB}
    # A wrong offset is refused with the right one.
    wrong = env.alice.patch(
        f"/v1/volumes/data/uploads/{up['id']}", headers={"Upload-Offset": "0"}, content=data[:10]
    )
    assert wrong.status_code == 409
    assert wrong.headers["upload-offset"] == str(MB)
    assert wrong.json()["field"] == "Upload-Offset"
    done = env.alice.patch(
        f"/v1/volumes/data/uploads/{up['id']}",
        headers={"Upload-Offset": str(MB)},
        content=data[MB:],
    )
    assert done.json()["complete"] is True
    target = env.vol("data") / "part" / "file.bin"
    assert target.read_bytes() == data
    assert target.stat().st_mtime == 1.6e9
    [entry] = env.alice.get("/v1/volumes/data/files", params={"path": "part"}).json()["items"]
    assert entry == {"name": "file.bin", "type": "file", "size": len(data), "mtime": 1.6e9}
    # Done: asking again says complete at once (nothing to resend).
    assert (
        env.alice.post(
            "/v1/volumes/data/uploads",
            json={"path": "part/file.bin", "size": len(data), "mtime": 1.6e9},
        ).json()["complete"]
        is True
    )


def test_upload_limits(env: Env) -> None:
    big = env.alice.post(
        "/v1/volumes/data/uploads",
        json={"path": "big.bin", "size": MAX_FILE_MB * MB + 1, "mtime": 1},
    )
    assert big.status_code == 413
    assert big.json()["field"] == "size"
    up = env.alice.post(
        "/v1/volumes/data/uploads", json={"path": "chunky.bin", "size": 3 * MB, "mtime": 1}
    ).json()
    r = env.alice.patch(
        f"/v1/volumes/data/uploads/{up['id']}",
        headers={"Upload-Offset": "0"},
        content=b"x" * (MAX_CHUNK_MB * MB + 1),
    )
    assert r.status_code == 413
    assert r.json()["field"] == "body"
    status = env.alice.post(
        "/v1/volumes/data/uploads", json={"path": "chunky.bin", "size": 3 * MB, "mtime": 1}
    ).json()
    assert status["offset"] == 0  # nothing of the refused body was kept
    r = env.alice.patch(f"/v1/volumes/data/uploads/{'0' * 32}", headers={"Upload-Offset": "0"})
    assert r.status_code == 404
    r = env.alice.patch("/v1/volumes/data/uploads/not-an-id", headers={"Upload-Offset": "0"})
    assert r.status_code == 422


def test_a_folder_in_the_way_is_a_conflict(env: Env) -> None:
    upload(env.alice, "data", "dir-here/inner.txt", b"x")
    r = env.alice.post("/v1/volumes/data/uploads", json={"path": "dir-here", "size": 1, "mtime": 1})
    assert r.status_code == 409
    assert "folder" in r.json()["message"]


def test_empty_files_complete_at_once(env: Env) -> None:
    up = upload(env.alice, "data", "empty.txt", b"", mtime=1.5e9)
    assert up["complete"] and up["offset"] == 0
    assert (env.vol("data") / "empty.txt").stat().st_mtime == 1.5e9


# ------------------------------------------------------------------- traversal

BAD_PATHS = ["..", "../secret.txt", "a/../../b", "a/..", "/etc", "/etc/passwd", "a\x00b"]


@pytest.mark.parametrize("path", BAD_PATHS)
@pytest.mark.parametrize("route", ["files", "download", "manifest"])
def test_paths_that_leave_the_volume_are_refused(env: Env, route: str, path: str) -> None:
    r = env.alice.get(f"/v1/volumes/data/{route}", params={"path": path})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "path"


@pytest.mark.parametrize("path", [*BAD_PATHS, "", "/", ".dora-uploads/x"])
def test_uploads_to_paths_outside_the_volume_are_refused(env: Env, path: str) -> None:
    r = env.alice.post("/v1/volumes/data/uploads", json={"path": path, "size": 1, "mtime": 1})
    assert r.status_code in (400, 422), r.text
    assert r.json()["field"] in ("path", "body.path")
    assert sorted(os.listdir(env.outside)) == ["secret.txt"]


def test_a_link_planted_in_the_volume_is_never_followed(env: Env) -> None:
    trap = env.vol("trap")
    trap.mkdir(parents=True)
    (trap / "ok.txt").write_text("fine")
    (trap / "escape").symlink_to(env.outside)  # e.g. made by a container
    (trap / "escape-file").symlink_to(env.outside / "secret.txt")
    items = {e["name"]: e["type"] for e in env.alice.get("/v1/volumes/trap/files").json()["items"]}
    assert items == {"ok.txt": "file", "escape": "link", "escape-file": "link"}
    for route in ("files", "download", "manifest"):
        for path in ("escape", "escape/", "escape/secret.txt", "escape-file"):
            r = env.alice.get(f"/v1/volumes/trap/{route}", params={"path": path})
            assert r.status_code == 400, (route, path, r.text)
            assert "symbolic link" in r.json()["message"]
    # The whole volume: the links travel as links; the secret never does.
    everything = untar(env.alice.get("/v1/volumes/trap/download").content)
    assert everything["ok.txt"] == b"fine"
    link = everything["escape-file"]
    assert isinstance(link, tarfile.TarInfo) and link.issym()
    assert link.linkname == str(env.outside / "secret.txt")
    assert not any(v == b"top secret" for v in everything.values())
    manifest = env.alice.get("/v1/volumes/trap/manifest").json()["files"]
    assert [f["path"] for f in manifest] == ["ok.txt"]
    # Writing through the links: refused, nothing appears outside.
    for path in ("escape/new.txt", "escape-file", "escape/deeper/new.txt"):
        r = env.alice.post("/v1/volumes/trap/uploads", json={"path": path, "size": 1, "mtime": 1})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["field"] == "path"
    assert sorted(os.listdir(env.outside)) == ["secret.txt"]
    assert (env.outside / "secret.txt").read_text() == "top secret"


def test_a_link_in_place_of_the_upload_folder_is_refused(env: Env) -> None:
    trap = env.vol("trap")
    trap.mkdir(parents=True, exist_ok=True)
    hidden = trap / ".dora-uploads"
    if hidden.exists() or hidden.is_symlink():
        os.rename(hidden, trap / f"old-{unique()}")
    hidden.symlink_to(env.outside)
    try:
        r = env.alice.post(
            "/v1/volumes/trap/uploads", json={"path": "x.txt", "size": 5, "mtime": 1}
        )
        assert r.status_code == 400, r.text
        assert sorted(os.listdir(env.outside)) == ["secret.txt"]
    finally:
        hidden.unlink()


# ------------------------------------------------------------------- downloads


def test_concurrent_downloads_of_different_folders_are_each_right(env: Env) -> None:
    trees = {
        name: {f"{name}/f{i}.bin": os.urandom(50_000 + i * 7_919) for i in range(6)}
        for name in ("left", "right")
    }
    for files in trees.values():
        for path, data in files.items():
            upload(env.alice, "data", f"conc/{path}", data)

    def fetch(name: str) -> tuple[str, dict[str, tarfile.TarInfo | bytes]]:
        with env.api.client(env.alice.headers["authorization"].split()[1]) as c:
            r = c.get("/v1/volumes/data/download", params={"path": f"conc/{name}"})
            assert r.status_code == 200, r.text
            return name, untar(r.content)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetch, ["left", "right"] * 6))
    for name, got in results:
        want = {p.split("/", 1)[1]: d for p, d in trees[name].items()}
        assert got == want, name


def test_a_file_downloads_as_itself(env: Env) -> None:
    upload(env.alice, "data", "single/one.txt", b"one", mtime=1.2e9)
    r = env.alice.get("/v1/volumes/data/download", params={"path": "single/one.txt"})
    assert r.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        [member] = tar.getmembers()
        assert (member.name, member.mtime) == ("one.txt", 1.2e9)


# ------------------------------------------------------------------------- NFS


def test_nfs_volume_through_storage_mounts(env: Env) -> None:
    upload(env.alice, "nfsvol", "results/r.txt", b"on nfs")
    # <export mount>/<workspace>/<volume>: the path the nodes mount from the server.
    assert (env.export / TEAM_A / "nfsvol" / "results" / "r.txt").read_bytes() == b"on nfs"
    names = [e["name"] for e in env.alice.get("/v1/volumes/nfsvol/files").json()["items"]]
    assert names == ["results"]


def test_nfs_storage_the_api_cannot_mount_says_how_to_fix_it(env: Env) -> None:
    r = env.alice.get("/v1/volumes/unmounted/files")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "storage_unavailable"
    assert "DORA_STORAGE_MOUNTS" in body["message"]
    assert "127.0.0.32:/exports/x" in body["message"]


def test_a_connection_dropped_mid_body_keeps_what_arrived(env: Env) -> None:
    """The body is streamed to disk as it comes: a client that dies half-way through a
    chunk loses only what never arrived, and resumes from the server's offset."""
    data = os.urandom(MB)
    body = {"path": "dropped.bin", "size": len(data), "mtime": 1.0}
    up = env.alice.post("/v1/volumes/data/uploads", json=body).json()
    token = env.alice.headers["authorization"]
    sent = 600_000
    with socket.create_connection(("127.0.0.1", env.api.port)) as raw:
        raw.sendall(
            (
                f"PATCH /v1/volumes/data/uploads/{up['id']} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nAuthorization: {token}\r\nUpload-Offset: 0\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:sent]
        )

    def offset() -> int:  # 409 while the server still holds the dropped request's lock
        r = env.alice.post("/v1/volumes/data/uploads", json=body)
        return int(r.json()["offset"]) if r.status_code == 200 else 0

    held = wait_until(
        offset,
        within=10,
        what="the server to keep the bytes that arrived",
    )
    assert held == sent
    assert not (env.vol("data") / "dropped.bin").exists()
    r = env.alice.patch(
        f"/v1/volumes/data/uploads/{up['id']}",
        headers={"Upload-Offset": str(held)},
        content=data[held:],
    )
    assert r.json()["complete"] is True
    assert (env.vol("data") / "dropped.bin").read_bytes() == data


async def test_the_async_sdk_uploads_lists_and_downloads(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "in").mkdir(parents=True)
    (src / "in" / "x.txt").write_text("async")
    token = env.alice.headers["authorization"].split()[1]
    async with AsyncClient(env.api.url, token) as dora:
        sent = await dora.upload(src, "data", "async-sdk")
        assert (sent.files, sent.bytes) == (1, 5)
        assert [e.name for e in await dora.ls("data", "/async-sdk/in")] == ["x.txt"]
        listing = await dora.manifest("data", "async-sdk")
        assert [f.path for f in listing.files] == ["in/x.txt"]
        got = await dora.download("data", "async-sdk", tmp_path / "back")
        assert got.files == 1
    assert (tmp_path / "back" / "in" / "x.txt").read_text() == "async"


def test_abandoned_partial_uploads_are_swept(env: Env) -> None:
    body = {"path": "abandoned.bin", "size": 10, "mtime": 1.0}
    up = env.alice.post("/v1/volumes/data/uploads", json=body).json()
    env.alice.patch(
        f"/v1/volumes/data/uploads/{up['id']}", headers={"Upload-Offset": "0"}, content=b"12345"
    )
    hidden = env.vol("data") / ".dora-uploads"
    part = hidden / f"{up['id']}.part"
    eight_days_ago = time.time() - 8 * 86400
    os.utime(part, (eight_days_ago, eight_days_ago))
    os.utime(hidden / f"{up['id']}.json", (eight_days_ago, eight_days_ago))
    upload(env.alice, "data", "fresh.txt", b"fresh")  # starting another upload sweeps
    assert not part.exists()
    assert env.alice.post("/v1/volumes/data/uploads", json=body).json()["offset"] == 0
