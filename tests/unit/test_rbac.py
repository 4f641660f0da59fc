"""RBAC decisions over the admin guide's own roles and users."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dora.auth import ALL, Action, Grant, Permissions, decide, in_scopes, visible_scopes

USER_ROLE = Permissions.from_spec(
    {
        "Workload": ["Apply", "Delete", "Get", "Describe", "Pause", "Resume", "Event", "Version"],
        "Container": ["Apply", "Delete", "Get", "Describe", "Pause", "Resume", "Shell", "Token"],
        "Volume": ["Get", "Describe", "Use", "Upload", "Download", "Ls", "Sync"],
        "GPU": ["Get"],
        "Workspace": ["Clone"],
        "User": ["Credits"],
    }
)
NODE_ROLE = Permissions.from_spec({"Node": ["report"]})
ADMIN_ROLE = Permissions.from_spec({ALL: ["All"]})
ROLES = {"user": USER_ROLE, "node-rep": NODE_ROLE, "admin": ADMIN_ROLE}

ZONE = "dora-cluster-1"
AMEDEO = [Grant(ALL, ZONE, "amedeo.setti", "user")]
NODE = [Grant("Node", ALL, ALL, "node-rep")]
ADMIN = [Grant(ALL, ALL, ALL, "admin")]


@pytest.mark.parametrize(
    ("kind", "verb"),
    [
        ("Workload", "Apply"),
        ("Workload", "delete"),
        ("Container", "SHELL"),
        ("Volume", "Upload"),
        ("GPU", "Get"),
        ("Workspace", "Clone"),
    ],
)
def test_user_may_use_listed_verbs_in_own_workspace(kind: str, verb: str) -> None:
    assert decide(AMEDEO, ROLES, Action(kind, verb, ZONE, "amedeo.setti"))


@pytest.mark.parametrize(
    ("kind", "verb", "zone", "workspace"),
    [
        ("Workload", "Apply", ZONE, "someone.else"),  # other workspace
        ("Workload", "Apply", "other-zone", "amedeo.setti"),  # other zone
        ("Workload", "Log", ZONE, "amedeo.setti"),  # verb not in role
        ("Node", "Get", ZONE, ""),  # kind not in role: deny, never an error
        ("User", "Apply", "", ""),  # global kind, grant scoped to one zone
        ("Role", "Apply", "", ""),
    ],
)
def test_user_is_denied_outside_grant(kind: str, verb: str, zone: str, workspace: str) -> None:
    decision = decide(AMEDEO, ROLES, Action(kind, verb, zone, workspace))
    assert not decision
    assert decision.grant is None


def test_node_user_may_only_report() -> None:
    assert decide(NODE, ROLES, Action("Node", "Report", ZONE, ""))
    assert not decide(NODE, ROLES, Action("Node", "Apply", ZONE, ""))
    assert not decide(NODE, ROLES, Action("Workload", "Get", ZONE, "amedeo.setti"))


def test_admin_may_do_everything_including_kinds_the_original_forgot() -> None:
    for kind in ("Resourcecredit", "Usercredit", "Event", "Version", "Token", "Node"):
        assert decide(ADMIN, ROLES, Action(kind, "Apply", "", ""))
        assert decide(ADMIN, ROLES, Action(kind, "Report", ZONE, "x"))


def test_later_grant_is_used_when_first_role_lacks_the_kind() -> None:
    grants = [Grant(ALL, ZONE, "ws", "node-rep"), Grant(ALL, ZONE, "ws", "user")]
    decision = decide(grants, ROLES, Action("Workload", "Apply", ZONE, "ws"))
    assert decision.grant == grants[1]


def test_missing_role_denies() -> None:
    assert not decide([Grant(ALL, ALL, ALL, "ghost")], ROLES, Action("Workload", "Get", ZONE, "w"))


def test_visible_scopes_for_listing_across_workspaces() -> None:
    grants = [*AMEDEO, Grant("Workload", ZONE, "team", "user"), Grant("Node", ALL, ALL, "user")]
    scopes = visible_scopes(grants, ROLES, "Workload", "Get")
    assert scopes == [(ZONE, "amedeo.setti"), (ZONE, "team")]
    assert in_scopes(scopes, ZONE, "team")
    assert not in_scopes(scopes, ZONE, "other")
    assert visible_scopes(grants, ROLES, "Role", "Get") == []


names = st.sampled_from(["a", "b", ALL])


@given(
    grant=st.builds(
        Grant,
        kind=st.sampled_from(["Workload", ALL]),
        zone=names,
        workspace=names,
        role=st.just("user"),
    ),
    zone=st.sampled_from(["a", "b"]),
    workspace=st.sampled_from(["a", "b"]),
)
def test_allow_implies_grant_covers_scope(grant: Grant, zone: str, workspace: str) -> None:
    decision = decide([grant], ROLES, Action("Workload", "Get", zone, workspace))
    covers = grant.zone in (ALL, zone) and grant.workspace in (ALL, workspace)
    assert bool(decision) == covers
