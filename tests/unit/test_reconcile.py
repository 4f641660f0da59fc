"""Reconcile: what should exist, rule by rule, plus convergence properties."""

from __future__ import annotations

import dataclasses
import importlib

from hypothesis import given, settings
from hypothesis import strategies as st

from dora.scheduler import (
    ActionKind,
    Backoff,
    ContainerState,
    ContainerView,
    Desired,
    EventReason,
    Phase,
    ReconcileResult,
    RestartPolicy,
    WorkloadView,
    reconcile,
    recreations_after,
    replica_index,
    replica_name,
)

# The module itself (the package exports its `reconcile` function under that name).
reconcile_module = importlib.import_module("dora.scheduler.reconcile")

RUNNING = ContainerState.RUNNING
EXITED = ContainerState.EXITED


def wk(replicas: int = 2, **kwargs: object) -> WorkloadView:
    return WorkloadView(name="train", replicas=replicas, spec_hash="h1", **kwargs)  # type: ignore[arg-type]


def c(
    index: int,
    state: ContainerState = RUNNING,
    *,
    node: str | None = "n1",
    spec_hash: str = "h1",
    **kwargs: object,
) -> ContainerView:
    return ContainerView(
        name=f"train.{index}",
        spec_hash=spec_hash,
        state=state,
        node=node,
        **kwargs,  # type: ignore[arg-type]
    )


def kinds(result: ReconcileResult) -> list[tuple[ActionKind, str]]:
    return [(a.kind, a.container) for a in result.actions]


# ---------------------------------------------------------------- names


def test_replica_names_count_from_one() -> None:
    assert replica_name("blue.red", 1) == "blue.red.1"
    assert replica_index("blue.red", "blue.red.12") == 12
    for bad in ("blue.red", "blue.red.0", "blue.red.01", "blue.x.1", "blue.red.a"):
        assert replica_index("blue.red", bad) is None


# ---------------------------------------------------------------- scaling


def test_new_workload_creates_all_replicas_at_once() -> None:
    result = reconcile(wk(3), [], now=0.0)
    assert kinds(result) == [(ActionKind.CREATE, f"train.{i}") for i in (1, 2, 3)]
    assert all(a.reason is EventReason.SCALE_UP for a in result.actions)
    assert result.phase is Phase.PENDING


def test_scale_up_fills_the_lowest_missing_indices() -> None:
    result = reconcile(wk(4), [c(1), c(3)], now=0.0)
    assert result.names(ActionKind.CREATE) == ("train.2", "train.4")


def test_scale_down_drains_highest_index_first() -> None:
    result = reconcile(wk(1), [c(1), c(2), c(3)], now=0.0)
    assert kinds(result) == [(ActionKind.DRAIN, "train.3"), (ActionKind.DRAIN, "train.2")]
    assert {a.reason for a in result.actions} == {EventReason.SCALE_DOWN}


def test_scale_down_deletes_containers_that_were_never_placed() -> None:
    result = reconcile(wk(1), [c(1), c(2, ContainerState.PENDING, node=None)], now=0.0)
    assert kinds(result) == [(ActionKind.DELETE, "train.2")]


def test_a_draining_container_is_waited_for_then_deleted() -> None:
    draining = c(2, desired=Desired.DRAIN)
    assert reconcile(wk(1), [c(1), draining], now=0.0).actions == ()
    stopped = c(2, EXITED, exit_code=137, desired=Desired.DRAIN)
    assert kinds(reconcile(wk(1), [c(1), stopped], now=0.0)) == [(ActionKind.DELETE, "train.2")]


def test_a_placed_but_unreported_container_is_drained_not_deleted() -> None:
    """Deleting it could leave a copy starting on the node: wait for the agent."""
    result = reconcile(wk(1), [c(1), c(2, ContainerState.PENDING, node="n2")], now=0.0)
    assert kinds(result) == [(ActionKind.DRAIN, "train.2")]


def test_names_that_are_not_replicas_are_removed() -> None:
    stray = ContainerView(name="train.x", spec_hash="h1", state=RUNNING, node="n1")
    result = reconcile(wk(1), [c(1), stray], now=0.0)
    assert kinds(result) == [(ActionKind.DRAIN, "train.x")]


def test_zero_replicas_is_idle() -> None:
    assert reconcile(wk(0), [], now=0.0).phase is Phase.IDLE
    assert reconcile(wk(0), [c(1)], now=0.0).phase is Phase.DRAINING


def test_creation_waits_while_a_wanted_index_is_still_draining() -> None:
    result = reconcile(wk(3), [c(1), c(2, desired=Desired.DRAIN)], now=0.0)
    assert result.names(ActionKind.CREATE) == ()


# ---------------------------------------------------------------- spec change


def test_spec_change_drains_the_whole_old_gang_at_once() -> None:
    old = [c(1, spec_hash="h0"), c(2, spec_hash="h0")]
    result = reconcile(wk(2), old, now=0.0)
    assert kinds(result) == [(ActionKind.DRAIN, "train.2"), (ActionKind.DRAIN, "train.1")]
    assert {a.reason for a in result.actions} == {EventReason.SPEC_CHANGED}


def test_new_gang_waits_until_the_old_one_is_gone() -> None:
    half_gone = [c(1, spec_hash="h0", desired=Desired.DRAIN)]
    result = reconcile(wk(2), half_gone, now=0.0)
    assert result.names(ActionKind.CREATE) == ()
    assert kinds(reconcile(wk(2), [], now=0.0)) == [
        (ActionKind.CREATE, "train.1"),
        (ActionKind.CREATE, "train.2"),
    ]


def test_stopped_old_containers_are_deleted_right_away() -> None:
    result = reconcile(wk(1), [c(1, EXITED, exit_code=0, spec_hash="h0")], now=0.0)
    assert kinds(result) == [(ActionKind.DELETE, "train.1")]


# ---------------------------------------------------------------- delete and pause


def test_deleting_a_workload_drains_everything() -> None:
    containers = [c(1), c(2, ContainerState.PENDING, node=None), c(3, EXITED, exit_code=0)]
    result = reconcile(wk(3, desired=Desired.DRAIN), containers, now=0.0)
    assert kinds(result) == [
        (ActionKind.DELETE, "train.3"),
        (ActionKind.DELETE, "train.2"),
        (ActionKind.DRAIN, "train.1"),
    ]
    assert result.phase is Phase.DRAINING and not result.remove_workload


def test_workload_record_goes_when_the_drain_is_finished() -> None:
    result = reconcile(wk(3, desired=Desired.DRAIN), [], now=0.0)
    assert result.phase is Phase.DELETED
    assert result.remove_workload
    assert result.actions == ()


def test_pause_stops_containers_and_resume_recreates_them() -> None:
    paused = wk(2, desired=Desired.PAUSE)
    result = reconcile(paused, [c(1), c(2)], now=0.0)
    assert result.names(ActionKind.DRAIN) == ("train.2", "train.1")
    assert {a.reason for a in result.actions} == {EventReason.PAUSING}
    assert reconcile(paused, [], now=0.0).phase is Phase.PAUSED
    assert reconcile(wk(2), [], now=0.0).names(ActionKind.CREATE) == ("train.1", "train.2")


def test_a_paused_container_is_left_alone_and_counted_apart() -> None:
    """Container pause (the API sets the container's desired=pause, the agent reports
    ``paused``): no action — no drain, release or recreate — so it keeps its booking,
    and the phase says how many replicas are paused instead of calling them running."""
    frozen = c(2, ContainerState.PAUSED, desired=Desired.PAUSE)
    assert ContainerState.parse("paused") is ContainerState.PAUSED
    assert not frozen.stopped
    for policy in RestartPolicy:
        result = reconcile(wk(2, restart_policy=policy), [c(1), frozen], now=0.0)
        assert result.actions == (), policy
        assert (result.phase, result.message) == (
            Phase.RUNNING,
            "1/2 replicas running, 1 paused",
        )
    both = [c(1, ContainerState.PAUSED, desired=Desired.PAUSE), frozen]
    result = reconcile(wk(2), both, now=0.0)
    assert (result.actions, result.phase) == ((), Phase.PAUSED)
    assert result.message == "0/2 replicas running, 2 paused"
    # Asked for but not frozen yet: still running, and still left alone.
    asked = c(2, RUNNING, desired=Desired.PAUSE)
    result = reconcile(wk(2), [c(1), asked], now=0.0)
    assert (result.actions, result.message) == ((), "2/2 replicas running")
    # The workload's own pause or delete still drains a paused container.
    for desired in (Desired.PAUSE, Desired.DRAIN):
        assert reconcile(wk(2, desired=desired), [c(1), frozen], now=0.0).names(
            ActionKind.DRAIN
        ) == ("train.2", "train.1")
    # A spec change replaces it with the rest of the gang.
    stale = c(2, ContainerState.PAUSED, desired=Desired.PAUSE, spec_hash="h0")
    assert "train.2" in reconcile(wk(2), [c(1), stale], now=0.0).names(ActionKind.DRAIN)


# ---------------------------------------------------------------- restart policies


def test_never_releases_an_exited_container_at_once_and_keeps_the_record() -> None:
    result = reconcile(wk(2), [c(1, EXITED, exit_code=0), c(2)], now=0.0)
    assert kinds(result) == [(ActionKind.RELEASE, "train.1")]
    assert result.actions[0].reason is EventReason.COMPLETED
    assert result.phase is Phase.RUNNING


def test_a_released_container_is_not_released_again() -> None:
    result = reconcile(wk(2), [c(1, EXITED, exit_code=0, node=None), c(2)], now=0.0)
    assert result.actions == ()


def test_never_completes_when_every_replica_exited_zero() -> None:
    done = [c(1, EXITED, exit_code=0, node=None), c(2, EXITED, exit_code=0)]
    result = reconcile(wk(2), done, now=0.0)
    assert result.phase is Phase.COMPLETED
    assert kinds(result) == [(ActionKind.RELEASE, "train.2")]


def test_never_fails_when_every_replica_stopped_and_one_failed() -> None:
    containers = [c(1, EXITED, exit_code=0), c(2, ContainerState.FAILED)]
    result = reconcile(wk(2), containers, now=0.0)
    assert result.phase is Phase.FAILED
    assert {a.kind for a in result.actions} == {ActionKind.RELEASE}
    assert result.names(ActionKind.CREATE) == ()


def test_on_failure_restarts_only_failures() -> None:
    workload = wk(2, restart_policy=RestartPolicy.ON_FAILURE)
    result = reconcile(workload, [c(1, EXITED, exit_code=1), c(2, EXITED, exit_code=0)], now=0.0)
    assert kinds(result) == [(ActionKind.RECREATE, "train.1"), (ActionKind.RELEASE, "train.2")]
    assert result.actions[0].reason is EventReason.RESTARTED
    done = [c(1, EXITED, exit_code=0), c(2, EXITED, exit_code=0)]
    assert reconcile(workload, done, now=0.0).phase is Phase.COMPLETED


def test_always_recreates_whatever_the_exit_code() -> None:
    workload = wk(2, restart_policy=RestartPolicy.ALWAYS)
    result = reconcile(workload, [c(1, EXITED, exit_code=0), c(2, ContainerState.DELETED)], now=0.0)
    assert kinds(result) == [(ActionKind.RECREATE, "train.1"), (ActionKind.RECREATE, "train.2")]
    assert result.phase is Phase.PENDING


def test_running_when_every_replica_runs() -> None:
    assert reconcile(wk(2), [c(1), c(2)], now=0.0).phase is Phase.RUNNING
    assert reconcile(wk(2), [c(1), c(2, ContainerState.PULLING)], now=0.0).phase is Phase.PENDING


# ---------------------------------------------------------------- maxRunTime


def test_max_run_time_drains_from_the_first_start() -> None:
    workload = wk(2, max_run_time_s=3600, started_at=1000.0)
    containers = [c(1, started_at=1000.0), c(2, started_at=2000.0)]
    assert reconcile(workload, containers, now=4599.0).actions == ()
    result = reconcile(workload, containers, now=4600.0)
    assert result.names(ActionKind.DRAIN) == ("train.2", "train.1")
    assert {a.reason for a in result.actions} == {EventReason.MAX_RUN_TIME_EXCEEDED}
    assert result.phase is Phase.DRAINING


def test_max_run_time_clock_falls_back_to_the_earliest_container_start() -> None:
    workload = wk(1, max_run_time_s=60)
    result = reconcile(workload, [c(1, started_at=500.0)], now=561.0)
    assert result.started_at == 500.0
    assert result.names(ActionKind.DRAIN) == ("train.1",)


def test_after_max_run_time_the_workload_fails_and_is_not_restarted() -> None:
    workload = wk(2, max_run_time_s=60, started_at=0.0, restart_policy=RestartPolicy.ALWAYS)
    result = reconcile(workload, [], now=100.0)
    assert result.phase is Phase.FAILED
    assert result.actions == ()
    assert "maxRunTime" in result.message


def test_a_completed_workload_is_not_failed_by_max_run_time() -> None:
    workload = wk(1, max_run_time_s=60, started_at=0.0)
    result = reconcile(workload, [c(1, EXITED, exit_code=0, node=None)], now=100.0)
    assert result.phase is Phase.COMPLETED


def test_max_run_time_does_not_tick_before_the_first_start() -> None:
    workload = wk(1, max_run_time_s=60)
    result = reconcile(workload, [c(1, ContainerState.PENDING, node=None)], now=1e9)
    assert result.actions == ()
    assert result.started_at is None


# ---------------------------------------------------------------- node loss


def test_lost_node_replaces_containers_under_always_and_on_failure() -> None:
    for policy in (RestartPolicy.ALWAYS, RestartPolicy.ON_FAILURE):
        result = reconcile(
            wk(2, restart_policy=policy), [c(1, node="dead"), c(2)], 0.0, frozenset({"dead"})
        )
        assert kinds(result) == [(ActionKind.RECREATE, "train.1")]
        assert result.actions[0].reason is EventReason.NODE_LOST


def test_lost_node_marks_never_containers_failed() -> None:
    result = reconcile(wk(1), [c(1, node="dead")], 0.0, frozenset({"dead"}))
    assert kinds(result) == [(ActionKind.MARK_FAILED, "train.1")]
    assert result.actions[0].message == "node dead lost"
    assert result.phase is Phase.FAILED


def test_draining_containers_on_a_lost_node_are_deleted() -> None:
    draining = c(1, node="dead", desired=Desired.DRAIN)
    result = reconcile(wk(1, desired=Desired.DRAIN), [draining], 0.0, frozenset({"dead"}))
    assert kinds(result) == [(ActionKind.DELETE, "train.1")]
    assert result.actions[0].reason is EventReason.NODE_LOST


def test_stopped_containers_on_a_lost_node_follow_the_normal_rules() -> None:
    result = reconcile(wk(1), [c(1, EXITED, exit_code=0, node="dead")], 0.0, frozenset({"dead"}))
    assert kinds(result) == [(ActionKind.RELEASE, "train.1")]


# ---------------------------------------------------------------- properties

_states = st.sampled_from(list(ContainerState))
_policies = st.sampled_from(list(RestartPolicy))


@st.composite
def _containers(draw: st.DrawFn) -> list[ContainerView]:
    indices = draw(st.sets(st.integers(1, 6), max_size=6))
    out = []
    for index in sorted(indices):
        state = draw(_states)
        out.append(
            ContainerView(
                name=f"train.{index}",
                spec_hash=draw(st.sampled_from(["h0", "h1"])),
                desired=draw(st.sampled_from([Desired.RUN, Desired.DRAIN])),
                state=state,
                exit_code=draw(st.sampled_from([None, 0, 1])),
                node=draw(st.sampled_from([None, "n1", "dead"])),
                started_at=draw(st.sampled_from([None, 0.0, 50.0])),
            )
        )
    return out


@settings(max_examples=300, deadline=None)
@given(
    containers=_containers(),
    replicas=st.integers(0, 5),
    desired=st.sampled_from(list(Desired)),
    policy=_policies,
    max_run_time=st.sampled_from([None, 30.0, 1000.0]),
)
def test_reconcile_invariants(
    containers: list[ContainerView],
    replicas: int,
    desired: Desired,
    policy: RestartPolicy,
    max_run_time: float | None,
) -> None:
    workload = WorkloadView(
        "train", desired, replicas, "h1", policy, max_run_time_s=max_run_time, started_at=None
    )
    result = reconcile(workload, containers, now=100.0, lost_nodes=frozenset({"dead"}))
    touched = [a.container for a in result.actions]
    assert len(touched) == len(set(touched)), "at most one action per container"
    existing = {x.name for x in containers}
    for action in result.actions:
        if action.kind is ActionKind.CREATE:
            assert action.container not in existing
            index = replica_index("train", action.container)
            assert index is not None and 1 <= index <= replicas
            assert desired is Desired.RUN
            assert all(x.spec_hash == "h1" for x in containers)
        else:
            assert action.container in existing
    if desired is not Desired.RUN:
        assert result.names(ActionKind.CREATE) == ()
        assert result.names(ActionKind.RECREATE) == ()
    assert result.remove_workload == (desired is Desired.DRAIN and not containers)


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(-1, 5),
    desired=st.sampled_from(list(Desired)),
    policy=_policies,
    max_run_time=st.sampled_from([None, 30.0, 100.0, 1000.0]),
    started_at=st.sampled_from([None, 0.0, 70.0, 100.0]),
)
def test_a_workload_without_containers_gets_what_the_full_rules_decide(
    replicas: int,
    desired: Desired,
    policy: RestartPolicy,
    max_run_time: float | None,
    started_at: float | None,
) -> None:
    # `reconcile` takes a shortcut for a workload with no container (every new one):
    # it must decide exactly what the rules in full decide over no records.
    workload = WorkloadView(
        "train", desired, replicas, "h1", policy, max_run_time_s=max_run_time, started_at=started_at
    )
    lost = frozenset({"dead"})
    fast = reconcile(workload, [], now=100.0, lost_nodes=lost)
    full = reconcile_module._general(workload, [], 100.0, lost, Backoff())
    assert fast == full


def _apply(result: ReconcileResult, containers: list[ContainerView]) -> list[ContainerView]:
    """A toy store + agent: applies actions, and the agent stops what is draining."""
    by_name = {x.name: x for x in containers}
    for action in result.actions:
        current = by_name.get(action.container)
        if action.kind is ActionKind.CREATE:
            by_name[action.container] = ContainerView(action.container, spec_hash="h1")
        elif action.kind is ActionKind.DELETE:
            by_name.pop(action.container)
        elif current is None:
            continue
        elif action.kind is ActionKind.DRAIN:
            by_name[action.container] = dataclasses.replace(current, desired=Desired.DRAIN)
        elif action.kind is ActionKind.RELEASE:
            by_name[action.container] = dataclasses.replace(current, node=None)
        elif action.kind is ActionKind.RECREATE:
            by_name[action.container] = ContainerView(action.container, spec_hash=current.spec_hash)
        elif action.kind is ActionKind.MARK_FAILED:
            by_name[action.container] = dataclasses.replace(
                current, state=ContainerState.FAILED, node=None
            )
    out = []
    for x in by_name.values():
        if x.desired is Desired.DRAIN and not x.stopped:
            x = dataclasses.replace(x, state=ContainerState.EXITED, exit_code=137)
        elif not x.stopped:  # the scheduler places it, the agent starts it
            x = dataclasses.replace(x, node=x.node or "n1", state=RUNNING, started_at=10.0)
        out.append(x)
    return out


@settings(max_examples=200, deadline=None)
@given(
    containers=_containers(),
    replicas=st.integers(0, 5),
    desired=st.sampled_from(list(Desired)),
    policy=_policies,
)
def test_reconcile_converges(
    containers: list[ContainerView], replicas: int, desired: Desired, policy: RestartPolicy
) -> None:
    workload = WorkloadView("train", desired, replicas, "h1", policy)
    lost = frozenset({"dead"})
    result = reconcile(workload, containers, now=100.0, lost_nodes=lost)
    for _ in range(6):
        containers = _apply(result, containers)
        result = reconcile(workload, containers, now=100.0, lost_nodes=lost)
    if desired is Desired.DRAIN:
        assert result.phase is Phase.DELETED
    elif desired is Desired.PAUSE:
        assert result.phase is Phase.PAUSED
    elif replicas == 0:
        assert result.phase is Phase.IDLE
    elif policy is RestartPolicy.ALWAYS:
        assert result.phase is Phase.RUNNING
        assert sorted(x.name for x in containers) == [f"train.{i}" for i in range(1, replicas + 1)]
    else:
        assert result.phase in (Phase.RUNNING, Phase.COMPLETED, Phase.FAILED)


# ---------------------------------------------------------------- crash-loop backoff

FAILED = ContainerState.FAILED


def test_a_failed_container_releases_then_waits_before_it_is_recreated() -> None:
    workload = wk(1, restart_policy=RestartPolicy.ALWAYS)
    failed = c(1, FAILED, started_at=100.0, stopped_at=103.0)
    early = reconcile(workload, [failed], now=104.0)
    assert kinds(early) == [(ActionKind.RELEASE, "train.1")]
    assert early.actions[0].reason is EventReason.BACK_OFF
    assert early.phase is Phase.PENDING
    assert "starting again in 9 s" in early.message and "restart 1" in early.message
    released = dataclasses.replace(failed, node=None)
    waiting = reconcile(workload, [released], now=112.9)
    assert waiting.actions == () and waiting.phase is Phase.PENDING
    assert kinds(reconcile(workload, [released], now=113.0)) == [(ActionKind.RECREATE, "train.1")]


def test_the_backoff_doubles_with_each_recreation_up_to_the_cap() -> None:
    backoff = Backoff(base_s=10.0, max_s=300.0)
    assert [backoff.delay(n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    workload = wk(1, restart_policy=RestartPolicy.ON_FAILURE)
    third = c(1, FAILED, node=None, started_at=0.0, stopped_at=1.0, recreations=2)
    assert reconcile(workload, [third], now=40.9).actions == ()
    assert kinds(reconcile(workload, [third], now=41.0)) == [(ActionKind.RECREATE, "train.1")]
    assert recreations_after(third) == 3


def test_a_long_run_before_the_failure_resets_the_backoff() -> None:
    workload = wk(1, restart_policy=RestartPolicy.ALWAYS)
    long_run = c(1, FAILED, node=None, started_at=0.0, stopped_at=3600.0, recreations=4)
    assert kinds(reconcile(workload, [long_run], now=3600.0)) == [(ActionKind.RECREATE, "train.1")]
    assert recreations_after(long_run) == 0


def test_exits_and_deletions_are_not_backed_off() -> None:
    workload = wk(2, restart_policy=RestartPolicy.ALWAYS)
    records = [
        c(1, EXITED, exit_code=1, stopped_at=10.0),
        c(2, ContainerState.DELETED, stopped_at=10.0, recreations=3),
    ]
    result = reconcile(workload, records, now=10.0)
    assert kinds(result) == [(ActionKind.RECREATE, "train.1"), (ActionKind.RECREATE, "train.2")]
    assert recreations_after(records[1]) == 3


def test_never_does_not_wait_for_a_failed_container() -> None:
    result = reconcile(wk(1), [c(1, FAILED, stopped_at=10.0)], now=10.0)
    assert kinds(result) == [(ActionKind.RELEASE, "train.1")]
    assert result.phase is Phase.FAILED
