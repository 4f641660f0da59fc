"""`dora ls`, `upload`, `download` and `sync` as a user would run them (the CLI as a
subprocess, a real API server, a Local storage in a temporary folder): a nested tree
with a binary file larger than the chunk size goes up and comes back byte for byte
with its mtimes; an interrupted upload resumes at the server's offset; sync sends
only what changed and skips ignored files; --watch keeps sending until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli_fixtures import SERVER_ENV, Cli
from tests.helpers import (
    SEED_USER,
    ApiProcess,
    apply_many,
    doc,
    local_storage_doc,
    make_token,
    seed_documents,
    unique,
    wait_until,
)

MB = 1024 * 1024
VOLUME = "files"


@dataclass
class World:
    api: ApiProcess
    cli: Cli
    user: httpx.Client
    storage: Path
    tmp: Path

    @property
    def volume_dir(self) -> Path:
        return self.storage / SEED_USER / VOLUME

    def local(self, name: str) -> Path:
        path = self.tmp / unique(name)
        path.mkdir()
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    storage = tmp_path_factory.mktemp("storage")
    with ApiProcess(tmp_path_factory.mktemp("files-api"), env=SERVER_ENV, name="files") as api:
        api.wait_ready()
        with api.client(api.admin_token()) as admin:
            apply_many(admin, seed_documents())
            apply_many(
                admin,
                [
                    local_storage_doc("local-store", storage),
                    doc("Volume", VOLUME, {"storage": "local-store"}, workspace=SEED_USER),
                ],
            )
            token = make_token(admin, SEED_USER, SEED_USER).token  # the guide's user role
        cli = Cli(tmp_path_factory.mktemp("cli-home"))
        cli.login(api, token, SEED_USER)
        with api.client(token) as user:
            yield World(api, cli, user, storage, tmp_path_factory.mktemp("local"))
        cli.assert_no_token_leaks()
    assert "Traceback" not in api.log_text()


def tree(root: Path) -> dict[str, tuple[bytes, float]]:
    """relative path → (bytes, mtime) of every file below `root`."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    files = {
        "a.txt": b"hello\n",
        "empty": b"",
        "sub/b.txt": "ünïcode ✓\n".encode(),
        "sub/deeper/big.bin": os.urandom(2 * MB + 12_345),  # > the 1 MB chunk
    }
    for i, (rel, data) in enumerate(files.items()):
        (root / rel).write_bytes(data)
        os.utime(root / rel, (1_600_000_000 + i, 1_600_000_000.25 + i))


def test_upload_ls_download_round_trip(world: World) -> None:
    src = world.local("src")
    make_tree(src)
    r = world.cli.run("upload", str(src), VOLUME, "/tree", "-c", "1")
    assert "uploaded 4 files (2.0 MB) to files:tree" in r.out
    assert tree(world.volume_dir / "tree") == tree(src)  # on the storage, as nodes see it

    assert world.cli.run("ls", VOLUME).lines == ["tree/"]
    assert world.cli.run("ls", VOLUME, "tree").lines == ["a.txt", "empty", "sub/"]
    long = world.cli.run("ls", VOLUME, "tree/sub/deeper", "-l").lines
    assert len(long) == 1 and long[0].startswith("file") and str(2 * MB + 12_345) in long[0]

    dest = world.local("dest")
    r = world.cli.run("download", VOLUME, "tree", str(dest / "out"))
    assert "downloaded 4 files" in r.out
    assert tree(dest / "out") == tree(src)
    # One file: it lands in the destination folder under its own name.
    world.cli.run("download", VOLUME, "tree/sub/b.txt", str(dest / "one"))
    assert tree(dest / "one") == {"b.txt": tree(src)["sub/b.txt"]}


def test_missing_volume_or_folder_is_said_plainly(world: World) -> None:
    for argv in (
        ("ls", VOLUME, "no/such"),
        ("ls", "no-such-volume"),
        ("download", VOLUME, "no/such", str(world.tmp / "x")),
    ):
        r = world.cli.run(*argv, expect=1)
        assert r.err.startswith("error: volume or folder not found"), str(r)
    r = world.cli.run("ls", VOLUME, "../etc", expect=1)
    assert "'..' is not allowed" in r.err


def test_an_interrupted_upload_resumes_where_the_server_stopped(world: World) -> None:
    src = world.local("resume")
    data = os.urandom(3 * MB + 7)
    (src / "model.pt").write_bytes(data)
    os.utime(src / "model.pt", (1_650_000_000, 1_650_000_000.5))
    body = {"path": "ckpt/model.pt", "size": len(data), "mtime": 1_650_000_000.5}
    # The first chunk arrives, then the connection "drops".
    up = world.user.post(f"/v1/volumes/{VOLUME}/uploads", json=body).json()
    r = world.user.patch(
        f"/v1/volumes/{VOLUME}/uploads/{up['id']}",
        headers={"Upload-Offset": "0"},
        content=data[:MB],
    )
    assert r.json()["offset"] == MB
    assert world.user.post(f"/v1/volumes/{VOLUME}/uploads", json=body).json()["offset"] == MB
    patches_before = world.api.log_text().count(f"PATCH /v1/volumes/{VOLUME}/uploads/{up['id']}")

    world.cli.run("upload", str(src / "model.pt"), VOLUME, "ckpt", "-c", "1")
    final = world.volume_dir / "ckpt" / "model.pt"
    assert final.read_bytes() == data
    assert final.stat().st_mtime == 1_650_000_000.5
    patches = world.api.log_text().count(f"PATCH /v1/volumes/{VOLUME}/uploads/{up['id']}")
    assert patches - patches_before == 3  # 2 MB + 7 bytes left: three 1 MB requests, not four


def test_sync_sends_only_what_changed_and_skips_ignored(world: World) -> None:
    src = world.local("proj")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: main")
    (src / "build").mkdir()
    (src / "build" / "out.o").write_text("obj")
    (src / "keep.py").write_text("print(1)")
    (src / "scratch.tmp").write_text("tmp")
    (src / "lib").mkdir()
    (src / "lib" / "util.py").write_text("x = 1")
    (src / ".dorasyncignore").write_text("# local junk\n*.tmp\nbuild/\n")
    first = world.cli.run("sync", str(src), VOLUME, "proj")
    assert "in sync: 2 sent, 0 unchanged" in first.out
    assert set(tree(world.volume_dir / "proj")) == {"keep.py", "lib/util.py"}
    again = world.cli.run("sync", str(src), VOLUME, "proj")
    assert "in sync: 0 sent, 2 unchanged" in again.out
    (src / "lib" / "util.py").write_text("x = 2")
    os.utime(src / "lib" / "util.py", (1_700_000_000, 1_700_000_000))
    third = world.cli.run("sync", str(src), VOLUME, "proj")
    assert "in sync: 1 sent, 1 unchanged" in third.out
    assert (world.volume_dir / "proj" / "lib" / "util.py").read_text() == "x = 2"


def test_sync_watch_sends_changes_until_interrupted(world: World) -> None:
    src = world.local("watched")
    (src / "a.txt").write_text("one")
    env = {**world.cli.base_env, **world.cli.env}
    argv = [
        sys.executable,
        "-m",
        "dora.cli.main",
        "sync",
        str(src),
        VOLUME,
        "watched",
        "--watch",
        "--interval",
        "1",
    ]
    log = world.tmp / unique("watch.log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(lambda: "watching" in log.read_text(), within=30, what="sync --watch to start")
        remote = world.volume_dir / "watched"
        assert (remote / "a.txt").read_text() == "one"
        (src / "b.txt").write_text("two")
        (src / "a.txt").write_text("one, changed")
        wait_until(
            lambda: (
                (remote / "b.txt").exists() and (remote / "a.txt").read_text() == "one, changed"
            ),
            within=30,
            what="the change to be sent",
        )
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_download_never_writes_outside_the_destination(world: World) -> None:
    room = world.volume_dir / "links"
    room.mkdir(parents=True)
    (room / "fine.txt").write_text("fine")
    (room / "to-etc").symlink_to("/etc/hostname")
    (room / "up-and-out").symlink_to("../../../../outside")
    (room / "inside").symlink_to("fine.txt")
    dest = world.local("links-dest")
    r = world.cli.run("download", VOLUME, "links", str(dest / "got"))
    assert "skipped to-etc" in r.err and "skipped up-and-out" in r.err
    got = dest / "got"
    assert sorted(p.name for p in got.iterdir()) == ["fine.txt", "inside"]
    assert (got / "inside").is_symlink() and os.readlink(got / "inside") == "fine.txt"
    assert sorted(p.name for p in dest.iterdir()) == ["got"]


def test_workspace_option_picks_the_scope_checked(world: World) -> None:
    src = world.local("ws")
    (src / "w.txt").write_text("w")
    world.cli.run("upload", str(src / "w.txt"), VOLUME, "ws", "-g", SEED_USER)
    assert world.cli.run("ls", VOLUME, "ws", "-g", SEED_USER).lines == ["w.txt"]
    for argv in (
        ("ls", VOLUME),
        ("upload", str(src / "w.txt"), VOLUME),
        ("download", VOLUME, "/", str(world.tmp / "no")),
        ("sync", str(src), VOLUME),
    ):
        r = world.cli.run(*argv, "-g", "someone-else", expect=1)
        assert "may not" in r.err and "someone-else" in r.err, str(r)
