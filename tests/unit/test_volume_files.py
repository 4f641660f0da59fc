"""The pure parts of volume file operations: which paths are allowed, where a volume
lives (one rule for the scheduler and the API), the API host's view of NFS exports,
the settings that name them, upload ids, and what `dora sync` sends or skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from dora.api.errors import ApiError
from dora.api.services.storage_mounts import local_dir, path_on_export
from dora.api.services.volume_files import VolumeDir
from dora.api.services.volume_paths import UPLOAD_DIR, parse_path
from dora.api.services.volume_uploads import upload_id
from dora.api.settings import SettingsError, storage_mounts_from_env
from dora.client.files import LocalFile, changed, ignored, volume_path
from dora.model.location import LOCAL_VOLUME_ROOT, volume_location
from dora.scheduler.adapter import resolve_volumes
from dora.store import Key, Record


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", ()),
        ("/", ()),
        (".", ()),
        ("a", ("a",)),
        ("a/b/c.txt", ("a", "b", "c.txt")),
        ("a//b/./c", ("a", "b", "c")),
        ("a/b/", ("a", "b")),
        ("dir with spaces/ünï ✓", ("dir with spaces", "ünï ✓")),
        ("..hidden/x..y", ("..hidden", "x..y")),
        ("back\\slash", ("back\\slash",)),
    ],
)
def test_paths_inside_the_volume(text: str, parts: tuple[str, ...]) -> None:
    assert parse_path(text) == parts


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("..", "'..'"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("//etc", "absolute"),
        ("a\x00b", "NUL"),
        (f"{UPLOAD_DIR}/abc.part", "partial uploads"),
        ("x" * 256, "longer than 255"),
        ("a/" * 2100, "longer than 4096"),
        ("\udcff", "Unicode"),
    ],
)
def test_paths_that_are_refused_name_the_field(text: str, reason: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_path(text)
    assert caught.value.status == 400
    assert caught.value.field == "path"
    assert reason in caught.value.message


def test_an_upload_must_name_a_file() -> None:
    with pytest.raises(ApiError, match="not the volume's root"):
        parse_path("/", root_ok=False)


def _record(kind: str, name: str, spec: dict, workspace: str = "") -> Record:
    return Record(
        key=Key(kind, "z", workspace, name), spec=spec, meta={}, desired="run", computed=None,
        observed=None, version=1, uid="u", owner="admin", node="", parent="",
        spec_hash="h", created_at=0.0, updated_at=0.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("vspec", "storage", "kind", "path"),
    [
        ({"storage": "Local"}, None, "Local", f"{LOCAL_VOLUME_ROOT}/ws/home"),
        ({"storage": "nas"}, {"kind": "NFS", "endpoint": "10.0.0.5", "mountpath": "/export/"},
         "NFS", "/export/ws/home"),
        ({"storage": "disk"}, {"kind": "Local", "mountpath": "/data"}, "Local", "/data/ws/home"),
        ({"storage": "nas", "localPath": "/export/shared"},
         {"kind": "NFS", "endpoint": "nas", "mountpath": "/export"}, "NFS", "/export/shared"),
    ],
)  # fmt: skip
def test_the_scheduler_and_the_api_share_one_location_rule(
    vspec: dict, storage: dict | None, kind: str, path: str
) -> None:
    where = volume_location("ws", "home", vspec, storage)
    assert (where.kind, where.path) == (kind, path)
    storages = {vspec["storage"]: _record("Storage", vspec["storage"], storage)} if storage else {}
    volumes = {("ws", "home"): _record("Volume", "home", vspec, "ws")}
    [mount] = resolve_volumes({"volumes": [{"name": "home"}]}, "ws", volumes, storages)
    assert (mount["storage_kind"], mount["path"], mount["endpoint"]) == (
        where.kind, where.path, where.endpoint,
    )  # fmt: skip


def test_an_nfs_volume_is_found_below_where_its_export_is_mounted() -> None:
    nas = {"kind": "NFS", "endpoint": "nas", "mountpath": "/export"}
    where = volume_location("ws", "home", {"storage": "nas"}, nas)
    assert path_on_export(where, "/mnt/nas") == "/mnt/nas/ws/home"
    inside = volume_location("ws", "x", {"storage": "nas", "localPath": "/export/a/b"}, nas)
    assert path_on_export(inside, "/mnt/nas") == "/mnt/nas/a/b"
    whole = volume_location("ws", "x", {"storage": "nas", "localPath": "/export"}, nas)
    assert path_on_export(whole, "/mnt/nas") == "/mnt/nas"
    for outside in ("/elsewhere", "/exported", "/export/../etc"):
        away = volume_location("ws", "x", {"storage": "nas", "localPath": outside}, nas)
        with pytest.raises(ApiError) as caught:
            path_on_export(away, "/mnt/nas")
        assert caught.value.status == 409 and "outside" in caught.value.message


@pytest.mark.parametrize("path", ["/", "/etc", "/var/run/docker.sock", "/proc/1", "relative"])
def test_local_volumes_in_system_folders_are_refused(path: str) -> None:
    where = volume_location("ws", "x", {"storage": "s", "localPath": path}, {"kind": "Local"})
    with pytest.raises(ApiError) as caught:
        local_dir(where, None)
    assert caught.value.status == 409


def test_a_local_volume_never_exposes_the_apis_own_data(tmp_path: Path) -> None:
    data = tmp_path / "dora-data"
    data.mkdir()
    for around in (tmp_path, data):
        where = volume_location("ws", "x", {"storage": "s", "localPath": str(around)},
                                {"kind": "Local"})  # fmt: skip
        with pytest.raises(ApiError, match="data folder"):
            local_dir(where, data)
    fine = volume_location("ws", "x", {"storage": "s"}, {"kind": "Local", "mountpath": "/srv"})
    assert local_dir(fine, data) == "/srv/ws/x"


def test_storage_mounts_setting() -> None:
    assert storage_mounts_from_env(None) == {}
    assert storage_mounts_from_env(" a=/mnt/a/ , b=/b,") == {"a": "/mnt/a", "b": "/b"}
    for bad in ("a", "a=relative", "=/x", "a=/x,a=/y"):
        with pytest.raises(SettingsError, match="DORA_STORAGE_MOUNTS"):
            storage_mounts_from_env(bad)


def test_upload_ids_are_deterministic_and_distinct() -> None:
    vol = VolumeDir("z", "ws", "home", "/x")
    first = upload_id(vol, ("a", "b.bin"), 10, 1.5)
    assert first == upload_id(vol, ("a", "b.bin"), 10, 1.5)
    assert len(first) == 32 and int(first, 16) >= 0
    others = {
        upload_id(vol, ("a", "c.bin"), 10, 1.5),
        upload_id(vol, ("a", "b.bin"), 11, 1.5),
        upload_id(vol, ("a", "b.bin"), 10, 1.6),
        upload_id(VolumeDir("z", "other", "home", "/x"), ("a", "b.bin"), 10, 1.5),
    }
    assert first not in others and len(others) == 4


@pytest.mark.parametrize(
    ("rel", "is_dir", "skipped"),
    [
        (".git", True, True),
        ("sub/.git/HEAD", False, True),
        (".dorasyncignore", False, True),
        ("x.tmp", False, True),
        ("deep/er/x.tmp", False, True),
        ("build", True, True),
        ("build", False, False),
        ("src/build", True, True),
        ("data/raw/big.csv", False, True),
        ("other/data/raw/big.csv", False, False),
        ("keep.py", False, False),
        (".gitignore", False, False),
    ],
)
def test_sync_ignores_git_and_dorasyncignore_patterns(
    rel: str, is_dir: bool, skipped: bool
) -> None:
    assert ignored(rel, is_dir, ["*.tmp", "build/", "/data/raw/*"]) is skipped


@pytest.mark.parametrize(
    ("rel", "is_dir", "skipped"),
    [
        ("run.log", False, True),
        ("keep.log", False, False),  # taken back by the later !keep.log
        ("logs", True, True),
        ("logs/keep.log", False, True),  # its folder is skipped: git does the same
        ("data/raw/a.csv", False, True),
        ("data/raw/labels.csv", False, False),
        ("!bang", False, True),  # \\! is a literal !
        ("#hash", False, True),  # \\# is a literal #
        ("other.txt", False, False),
    ],
)
def test_a_negated_pattern_takes_a_path_back_and_the_last_match_decides(
    rel: str, is_dir: bool, skipped: bool
) -> None:
    patterns = ["*.log", "!keep.log", "logs/", "/data/raw/*", "!/data/raw/labels.csv"]
    patterns += ["\\!bang", "\\#hash"]
    assert ignored(rel, is_dir, patterns) is skipped


def test_sync_sends_new_and_changed_files_only() -> None:
    files = [
        LocalFile(Path("a"), "a", 1, 10.0),
        LocalFile(Path("b"), "b", 2, 20.0),
        LocalFile(Path("c"), "c", 3, 30.0),
        LocalFile(Path("d"), "d", 4, 40.0),
    ]
    remote = {"a": (1, 10.0004), "b": (9, 20.0), "c": (3, 31.0)}
    assert [f.rel for f in changed(files, remote)] == ["b", "c", "d"]


@pytest.mark.parametrize(("text", "path"), [("/", ""), ("", ""), ("/a/b/", "a/b"), ("./a", "a")])
def test_cli_paths_become_volume_paths(text: str, path: str) -> None:
    assert volume_path(text) == path
