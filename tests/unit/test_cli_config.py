"""CLI profiles (`dora.cli.config`) and the CLI's fixed tables, in-process."""

from __future__ import annotations

import inspect
import stat
from pathlib import Path

import pytest

from dora.cli.config import Config, ConfigError, Profile, config_path, load, resolve, save
from dora.cli.resources import APPLY_ORDER
from dora.client import AsyncClient, Client
from dora.model import KINDS


def test_config_path_default_and_env(tmp_path: Path) -> None:
    assert config_path({}) == Path.home() / ".dora" / "config"
    assert config_path({"DORA_CONFIG": str(tmp_path / "c")}) == tmp_path / "c"


def test_save_then_load_round_trips_with_owner_only_modes(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config"
    config = Config("b", {"a": Profile("http://a", "ta"), "b": Profile("https://b", None, True)})
    save(path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load(path) == config
    assert not path.with_name("config.tmp").exists()


def test_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load(tmp_path / "none") == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("current: [x\n", "is not valid YAML (line 2, column 1)"),
        ("- a\n", "must be a mapping"),
        ("profiles: [a]\n", "'profiles' must be a mapping"),
        ("profiles: {a: {token: t}}\n", "profile 'a' needs a server"),
    ],
)
def test_bad_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(path)


def test_resolve_precedence() -> None:
    config = Config("a", {"a": Profile("http://a", "ta"), "b": Profile("http://b", "tb")})
    assert resolve(config, None, {}) == Profile("http://a", "ta")
    assert resolve(config, None, {"DORA_PROFILE": "b"}).server == "http://b"
    assert resolve(config, "a", {"DORA_PROFILE": "b"}).server == "http://a"  # flag wins
    env = {"DORA_API_SERVER": "http://env", "DORA_TOKEN": "te"}
    assert resolve(config, "b", env) == Profile("http://env", "te")
    assert resolve(Config(), None, env) == Profile("http://env", "te")
    with pytest.raises(ConfigError, match="no profile named 'c' \\(profiles: a, b\\)"):
        resolve(config, "c", {})
    with pytest.raises(ConfigError, match="no API server configured"):
        resolve(Config(), None, {})


def test_apply_order_names_every_kind_that_can_be_applied() -> None:
    writable = {name for name, info in KINDS.items() if not info.readonly}
    assert set(APPLY_ORDER) == writable
    position = {kind: i for i, kind in enumerate(APPLY_ORDER)}
    for before, after in [
        ("Zone", "Storage"),
        ("Workspace", "Volume"),
        ("Role", "User"),
        ("Storage", "Volume"),
        ("Volume", "Workload"),
        ("Node", "Workload"),
    ]:
        assert position[before] < position[after]


def _public(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


STREAMS = {"logs", "exec"}
"""Calls over the exec/logs channel rather than `dora.client.calls` (their own tests)."""


def test_sync_and_async_clients_offer_the_same_calls() -> None:
    sync = _public(Client) - {"close"}
    asynchronous = _public(AsyncClient) - {"aclose"}
    assert sync == asynchronous
    for name in sync - {"call"} - STREAMS:
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
        assert list(inspect.signature(getattr(Client, name)).parameters) == list(
            inspect.signature(getattr(AsyncClient, name)).parameters
        ), name


def test_the_cli_kind_names_are_the_models() -> None:
    from dora.cli.resources import KIND_NAMES
    from dora.model import resolve_kind
    from dora.model.kinds import _LOOKUP

    assert set(KIND_NAMES) == set(_LOOKUP)
    for text, kind in KIND_NAMES.items():
        assert resolve_kind(text).name == kind
