"""Choosing and opening the store from the environment."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from dora.store import Store, StoreError
from dora.store.config import (
    StoreSettings,
    check_local_filesystem,
    filesystem_type,
    open_store,
    parse_contact_points,
)
from dora.store.sqlite import SqliteStore


def settings(is_root: bool = False, **env: str) -> StoreSettings:
    return StoreSettings.from_env({"HOME": "/home/u", **env}, is_root=is_root)


def test_defaults_are_an_sqlite_file_named_dora_in_the_users_data_dir() -> None:
    s = settings()
    assert (s.backend, s.db_name, s.init_db, s.synchronous) == ("sqlite", "dora", False, "NORMAL")
    assert s.data_dir == Path("/home/u/.local/share/dora")
    assert s.sqlite_path == Path("/home/u/.local/share/dora/dora.sqlite3")


@pytest.mark.parametrize(
    ("env", "is_root", "expected"),
    [
        ({"XDG_DATA_HOME": "/xdg"}, False, "/xdg/dora"),
        ({"XDG_DATA_HOME": "/xdg"}, True, "/xdg/dora"),
        ({}, True, "/var/lib/dora"),
        ({"DORA_DATA_DIR": "/srv/dora", "XDG_DATA_HOME": "/xdg"}, True, "/srv/dora"),
    ],
)
def test_data_dir_precedence(env: dict[str, str], is_root: bool, expected: str) -> None:
    assert settings(is_root, **env).data_dir == Path(expected)


@pytest.mark.parametrize("name", ["dora-db-1", "prod_01", "a.b", "X"])
def test_db_name_accepts_plain_names(name: str) -> None:
    assert settings(DB_NAME=name).sqlite_path.name == f"{name}.sqlite3"


@pytest.mark.parametrize("name", ["../etc", "a/b", "a\\b", ".hidden", "", "a b", "x" * 101])
def test_db_name_rejects_paths_and_odd_names(name: str) -> None:
    with pytest.raises(StoreError, match="DB_NAME"):
        settings(DB_NAME=name)


@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("TRUE", True), ("1", True), ("false", False)]
)
def test_init_db(text: str, expected: bool) -> None:
    assert settings(INIT_DB=text).init_db is expected


def test_bad_values_name_their_variable() -> None:
    with pytest.raises(StoreError, match="INIT_DB"):
        settings(INIT_DB="maybe")
    with pytest.raises(StoreError, match="DORA_SQLITE_SYNCHRONOUS"):
        settings(DORA_SQLITE_SYNCHRONOUS="OFF")
    assert settings(DORA_SQLITE_SYNCHRONOUS="full").synchronous == "FULL"
    for bad in ("soon", "0", "-1", "7200"):
        with pytest.raises(StoreError, match="DORA_SQLITE_BUSY_S"):
            settings(DORA_SQLITE_BUSY_S=bad)


async def test_the_busy_timeout_reaches_the_sqlite_store(tmp_path: Path) -> None:
    assert settings().busy_timeout == 10.0
    store = await open_store(
        settings(DORA_DATA_DIR=str(tmp_path), DB_NAME="b", INIT_DB="true", DORA_SQLITE_BUSY_S="2.5")
    )
    try:
        assert isinstance(store, SqliteStore)
        assert store.busy_timeout == 2.5
    finally:
        await store.close()


def test_contact_points_select_the_cql_backend() -> None:
    s = settings(CONTACT_POINTS="127.0.0.1:9042, 127.0.0.2:9043,127.0.0.3", DB_NAME="dora-db-1")
    assert s.backend == "cql"
    assert s.contact_points == (("127.0.0.1", 9042), ("127.0.0.2", 9043), ("127.0.0.3", 9042))
    assert settings(CONTACT_POINTS=" , ").backend == "sqlite"


@pytest.mark.parametrize("text", ["127.0.0.1:0", "127.0.0.1:70000", "a:b", "::1"])
def test_bad_contact_points_are_refused(text: str) -> None:
    with pytest.raises(StoreError, match="CONTACT_POINTS"):
        parse_contact_points(text)


def test_ipv6_contact_points_use_brackets() -> None:
    assert parse_contact_points("[::1]:9043,[::1]") == (("::1", 9043), ("::1", 9042))


async def test_cql_without_its_backend_says_which_issue_brings_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "dora.store.cql", None)  # as if not written yet
    with pytest.raises(StoreError, match="issue 3"):
        await open_store(settings(CONTACT_POINTS="127.0.0.1:9042"))


async def test_open_store_creates_a_private_dir_and_file(tmp_path: Path) -> None:
    data = tmp_path / "deep" / "data"
    store: Store = await open_store(settings(DORA_DATA_DIR=str(data), DB_NAME="t"))
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == data / "t.sqlite3"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        assert not await store.is_initialized()  # INIT_DB not set: the caller decides
    finally:
        await store.close()
    store = await open_store(settings(DORA_DATA_DIR=str(data), DB_NAME="t", INIT_DB="true"))
    try:
        assert await store.is_initialized()
    finally:
        await store.close()


MOUNTS = """\
/dev/vda / ext4 rw 0 0
server:/export /mnt/shared nfs4 rw 0 0
/dev/vdb /mnt/shared/local ext4 rw 0 0
/dev/vdc /mnt/with\\040space xfs rw 0 0
"""


def test_filesystem_type_takes_the_longest_mount_prefix() -> None:
    assert filesystem_type(Path("/mnt/shared/dora"), MOUNTS) == "nfs4"
    assert filesystem_type(Path("/mnt/shared/local/dora"), MOUNTS) == "ext4"
    assert filesystem_type(Path("/mnt/sharedx"), MOUNTS) == "ext4"
    assert filesystem_type(Path("/mnt/with space/d"), MOUNTS) == "xfs"


def test_network_filesystems_are_refused() -> None:
    with pytest.raises(StoreError, match="nfs4"):
        check_local_filesystem(Path("/mnt/shared/dora"), MOUNTS)
    check_local_filesystem(Path("/mnt/shared/local/dora"), MOUNTS)
