"""The kind registry: scopes, read-only views, CLI aliases."""

from __future__ import annotations

import pytest

from dora.model import KINDS, PSEUDO_KINDS, SPEC_MODELS, UnknownKindError, resolve_kind


def test_kinds_have_the_scopes_of_the_original() -> None:
    scopes = {name: info.scope for name, info in KINDS.items()}
    assert scopes == {
        "Zone": "global",
        "Workspace": "global",
        "User": "global",
        "Role": "global",
        "Storage": "zoned",
        "Node": "zoned",
        "Resourcecredit": "zoned",
        "Usercredit": "zoned",
        "Volume": "zoned+workspaced",
        "Workload": "zoned+workspaced",
        "Container": "zoned+workspaced",
        "CPU": "zoned",
        "GPU": "zoned",
    }


def test_only_cpu_and_gpu_are_read_only_and_they_have_no_spec_model() -> None:
    assert [k for k, info in KINDS.items() if info.readonly] == ["CPU", "GPU"]
    assert set(SPEC_MODELS) == set(KINDS) - {"CPU", "GPU"}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("wk", "Workload"),
        ("workloads", "Workload"),
        ("WORKLOAD", "Workload"),
        ("c", "Container"),
        ("containers", "Container"),
        ("vol", "Volume"),
        ("vols", "Volume"),
        ("gpus", "GPU"),
        ("cpu", "CPU"),
        ("Nodes", "Node"),
        ("ws", "Workspace"),
        ("users", "User"),
        ("role", "Role"),
        ("rc", "Resourcecredit"),
        ("resourcecredits", "Resourcecredit"),
        ("uc", "Usercredit"),
        ("storages", "Storage"),
        ("z", "Zone"),
        (" zones ", "Zone"),
    ],
)
def test_resolve_kind_accepts_names_plurals_and_aliases_in_any_case(text: str, kind: str) -> None:
    assert resolve_kind(text).name == kind


def test_resolve_kind_error_lists_valid_kinds_and_suggests() -> None:
    with pytest.raises(UnknownKindError) as exc:
        resolve_kind("wrkload")
    message = str(exc.value)
    assert "did you mean 'Workload'?" in message
    for name in KINDS:
        assert name in message
    assert "wk" in message


def test_plurals_are_lower_case_and_pseudo_kinds_are_not_kinds() -> None:
    assert KINDS["Resourcecredit"].plural == "resourcecredits"
    assert KINDS["GPU"].plural == "gpus"
    assert not set(PSEUDO_KINDS) & set(KINDS)
    with pytest.raises(UnknownKindError):
        resolve_kind("Token")
