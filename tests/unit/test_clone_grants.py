"""Which grants a workspace clone copies (`cloned_grants`): only those on the source
itself, pointed at the new workspace, none twice, roles unchanged."""

from __future__ import annotations

from dora.api.services.clone import cloned_grants, cloned_name


def g(kind: str, workspace: str, role: str = "user", zone: str = "z1") -> dict[str, str]:
    return {"kind": kind, "zone": zone, "workspace": workspace, "role": role}


def test_only_grants_on_the_source_are_copied_with_the_workspace_changed() -> None:
    held = [
        g("Workspace", "src", "cloner"),
        g("Workload", "src", "reader"),
        g("All", "All", "viewer"),
        g("Workload", "other", "writer"),
        g("Volume", "src", "vols", zone="All"),
    ]
    assert cloned_grants(held, "src", "src.new") == [
        g("Workspace", "src.new", "cloner"),
        g("Workload", "src.new", "reader"),
        g("Volume", "src.new", "vols", zone="All"),
    ]


def test_grants_already_held_are_not_repeated() -> None:
    held = [g("All", "src"), g("All", "src.new"), g("All", "src")]
    assert cloned_grants(held, "src", "src.new") == []


def test_nothing_on_the_source_copies_nothing() -> None:
    assert cloned_grants([g("All", "All", "admin")], "src", "src.new") == []
    assert cloned_grants([], "src", "src.new") == []


def test_the_input_is_not_changed() -> None:
    held = [g("All", "src")]
    cloned_grants(held, "src", "src.new")
    assert held == [g("All", "src")]


def test_the_new_name() -> None:
    assert cloned_name("amedeo.setti", "exp") == "amedeo.setti.exp"
