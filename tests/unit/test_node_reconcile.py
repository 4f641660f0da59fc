"""The pure reconciliation of the node agent: actions, restarts, backoff, crash loops,
and the states it reports."""

from __future__ import annotations

from dataclasses import replace

from dora.node.reconcile import (
    Action,
    Have,
    History,
    RestartRules,
    Want,
    container_state,
    count_exit,
    reconcile,
    record_start_failure,
    record_started,
    should_restart,
)

RULES = RestartRules(backoff_s=1.0, backoff_max_s=8.0, fast_failure_s=10.0, crash_loop_limit=5)
K = ("ws", "job.1")


def want(desired: str = "run", uid: str = "u1", policy: str = "Never", **kw: object) -> Want:
    return Want(K, uid, desired, "h1", policy, **kw)  # type: ignore[arg-type]


def have(status: str = "running", uid: str = "u1", cid: str = "c1", **kw: object) -> Have:
    return Have(K, cid, uid, "h1", status, **kw)  # type: ignore[arg-type]


def exited(code: int, started: float, finished: float, **kw: object) -> Have:
    return have("exited", exit_code=code, started_at=started, finished_at=finished, **kw)


def kinds(actions: list[Action]) -> list[tuple[str, str | None, str]]:
    return [(a.kind, a.container_id, a.why) for a in actions]


# ---------------------------------------------------------------------- basic actions


def test_create_when_assigned_and_absent() -> None:
    plan = reconcile([want()], [], {}, 100.0, RULES)
    assert kinds(plan.actions) == [("create", None, "assigned")]
    assert plan.history[K] == History("u1", "h1")


def test_running_container_is_left_alone() -> None:
    plan = reconcile([want()], [have()], {}, 100.0, RULES)
    assert plan.actions == []
    assert plan.wake_at is None


def test_drain_removes_and_reports_deleted_when_gone() -> None:
    plan = reconcile([want("drain")], [have()], {}, 100.0, RULES)
    assert kinds(plan.actions) == [("remove", "c1", "drain")]
    assert container_state(want("drain"), have(), None).state == "draining"
    assert reconcile([want("drain")], [], {}, 100.0, RULES).actions == []
    assert container_state(want("drain"), None, None).state == "deleted"


def test_stray_of_this_node_is_removed() -> None:
    stray = Have(("ws", "old.1"), "c9", "u9", "h", "running")
    plan = reconcile([want()], [have(), stray], {}, 100.0, RULES)
    assert kinds(plan.actions) == [("remove", "c9", "stray")]


def test_nothing_assigned_removes_every_container_of_this_node() -> None:
    plan = reconcile([], [have(), have("exited", cid="c2")], {}, 1.0, RULES)
    assert kinds(plan.actions) == [("remove", "c1", "stray"), ("remove", "c2", "stray")]


def test_uid_mismatch_replaces_when_running() -> None:
    plan = reconcile([want(uid="u2")], [have(uid="u1")], {}, 100.0, RULES)
    assert kinds(plan.actions) == [("create", "c1", "replace")]


def test_uid_mismatch_while_paused_or_draining_only_removes() -> None:
    for desired in ("pause", "drain"):
        plan = reconcile([want(desired, uid="u2")], [have(uid="u1")], {}, 100.0, RULES)
        assert [a.kind for a in plan.actions] == ["remove"]


def test_pause_and_unpause() -> None:
    assert kinds(reconcile([want("pause")], [have()], {}, 1.0, RULES).actions) == [
        ("pause", "c1", "pause")
    ]
    assert reconcile([want("pause")], [have("paused")], {}, 1.0, RULES).actions == []
    assert reconcile([want("pause")], [], {}, 1.0, RULES).actions == []  # nothing created
    assert kinds(reconcile([want()], [have("paused")], {}, 1.0, RULES).actions) == [
        ("unpause", "c1", "resume")
    ]
    assert container_state(want("pause"), None, None).state == "paused"


def test_busy_containers_are_left_alone() -> None:
    stray = Have(("ws", "old.1"), "c9", "u9", "h", "running")
    plan = reconcile([want()], [stray], {}, 1.0, RULES, busy=frozenset({K, ("ws", "old.1")}))
    assert plan.actions == []


def test_duplicates_keep_the_running_one_of_the_right_uid() -> None:
    old = have("exited", uid="u0", cid="c0")
    good = have("running", uid="u1", cid="c1")
    plan = reconcile([want()], [old, good], {}, 1.0, RULES)
    assert kinds(plan.actions) == [("remove", "c0", "duplicate")]


def test_created_but_never_started_is_started() -> None:
    plan = reconcile([want()], [have("created")], {}, 1.0, RULES)
    assert kinds(plan.actions) == [("start", "c1", "created")]
    assert container_state(want(), have("created"), None).state == "creating"


# ---------------------------------------------------------------------- restart policy


def test_should_restart_table() -> None:
    assert not should_restart("Never", 1)
    assert not should_restart("Never", 0)
    assert should_restart("OnFailure", 1)
    assert not should_restart("OnFailure", 0)
    assert should_restart("Always", 0)
    assert should_restart("Always", 137)


def test_never_keeps_the_exit_and_reports_the_code() -> None:
    h = exited(3, 10.0, 11.0)
    plan = reconcile([want(policy="Never")], [h], {}, 100.0, RULES)
    assert plan.actions == []
    obs = container_state(want(), h, plan.history[K])
    assert (obs.state, obs.exit_code, obs.reason, obs.container_id) == ("exited", 3, None, "c1")
    assert (obs.started_at, obs.finished_at) == (10.0, 11.0)


def test_on_failure_with_success_keeps_it_exited() -> None:
    plan = reconcile([want(policy="OnFailure")], [exited(0, 10.0, 11.0)], {}, 100.0, RULES)
    assert plan.actions == []
    assert container_state(want(policy="OnFailure"), exited(0, 10, 11), plan.history[K]).state == (
        "exited"
    )


def test_fast_failure_restarts_after_backoff() -> None:
    w = want(policy="OnFailure")
    h = exited(1, 100.0, 102.0)  # ran 2 s: fast
    plan = reconcile([w], [h], {}, 102.5, RULES)
    assert plan.actions == []
    assert plan.wake_at == 103.0  # finished + 1 s
    hist = plan.history[K]
    assert (hist.failures, hist.retry_at) == (1, 103.0)
    obs = container_state(w, h, hist)
    assert (obs.state, obs.exit_code) == ("restarting", 1)
    assert obs.reason == "exited with code 1; restartPolicy OnFailure"
    # The same exit is counted once, however often we look.
    again = reconcile([w], [h], plan.history, 103.0, RULES)
    assert kinds(again.actions) == [("start", "c1", "restart")]
    assert again.history[K].failures == 1


def test_backoff_doubles_and_is_capped() -> None:
    assert [RULES.backoff(n) for n in range(0, 7)] == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_long_run_resets_the_failure_count_and_restarts_at_once() -> None:
    w = want(policy="Always")
    hist = History("u1", "h1", failures=3, counted_finish=50.0)
    plan = reconcile([w], [exited(0, 100.0, 200.0)], {K: hist}, 200.0, RULES)
    assert kinds(plan.actions) == [("start", "c1", "restart")]
    assert plan.history[K].failures == 0


def test_crash_loop_gives_up_after_the_limit() -> None:
    w = want(policy="Always")
    history: dict[tuple[str, str], History] = {}
    now = 0.0
    for run in range(1, 6):
        h = exited(2, now, now + 1.0)
        now += 1.0
        plan = reconcile([w], [h], history, now + 100.0, RULES)
        history = plan.history
        if run < 5:
            assert kinds(plan.actions) == [("start", "c1", "restart")]
            history = {K: record_started(history[K], restart=True)}
        else:
            assert plan.actions == []
    hist = history[K]
    assert hist.gave_up is not None
    assert hist.gave_up.startswith("crash loop: exited with code 2; it failed 5 times in a row")
    assert hist.restarts == 4
    obs = container_state(w, exited(2, 4.0, 5.0), hist)
    assert (obs.state, obs.exit_code, obs.restarts) == ("failed", 2, 4)
    assert obs.reason == hist.gave_up


def test_a_changed_assignment_clears_the_crash_loop() -> None:
    gave_up = History("u1", "h1", failures=5, gave_up="crash loop: …", counted_finish=5.0)
    h = exited(2, 4.0, 5.0)
    assert reconcile([want(policy="Always")], [h], {K: gave_up}, 9.0, RULES).actions == []
    changed = replace(want(policy="Always"), run_hash="h2")
    plan = reconcile([changed], [h], {K: gave_up}, 9.0, RULES)
    # The run hash changed: re-create from the new spec rather than restart the old one.
    assert kinds(plan.actions) == [("create", "c1", "restart-changed")]
    assert plan.history[K].gave_up is None


def test_oom_kill_is_named_in_the_reason() -> None:
    h = exited(137, 1.0, 50.0, oom_killed=True)
    obs = container_state(want(), h, History("u1", "h1"))
    assert obs.reason == "killed: out of memory (exit code 137)"
    assert count_exit(History("u1", "h1"), h, "Never", RULES).retry_at is None


# ---------------------------------------------------------------------- start failures


def test_transient_start_failures_back_off_then_give_up() -> None:
    hist = History("u1", "h1")
    for n in range(1, 5):
        hist = record_start_failure(hist, 100.0, "pull failed", permanent=False, rules=RULES)
        assert hist.gave_up is None
        assert hist.retry_at == 100.0 + RULES.backoff(n)
        obs = container_state(want(), None, hist)
        assert (obs.state, obs.reason) == ("creating", "pull failed; retrying")
        plan = reconcile([want()], [], {K: hist}, 100.0, RULES)
        assert plan.actions == [] and plan.wake_at == hist.retry_at
    hist = record_start_failure(hist, 100.0, "pull failed", permanent=False, rules=RULES)
    assert hist.gave_up == "gave up after 5 failed starts: pull failed"
    assert reconcile([want()], [], {K: hist}, 1e9, RULES).actions == []


def test_permanent_failure_gives_up_at_once() -> None:
    hist = record_start_failure(History("u1", "h1"), 1.0, "no nvidia", permanent=True, rules=RULES)
    assert hist.gave_up == "no nvidia"
    created = have("created")
    assert reconcile([want()], [created], {K: hist}, 1e9, RULES).actions == []
    obs = container_state(want(), created, hist)
    assert (obs.state, obs.reason, obs.container_id) == ("failed", "no nvidia", "c1")


def test_failed_start_of_a_created_container_is_retried_after_backoff() -> None:
    hist = record_start_failure(
        History("u1", "h1"), 10.0, "port busy", permanent=False, rules=RULES
    )
    created = have("created")
    assert reconcile([want()], [created], {K: hist}, 10.5, RULES).actions == []
    plan = reconcile([want()], [created], {K: hist}, 11.0, RULES)
    assert kinds(plan.actions) == [("start", "c1", "created")]


def test_unrunnable_assignment_is_failed_and_never_created() -> None:
    w = want(error="cannot run this assignment: bad")
    plan = reconcile([w], [], {}, 1.0, RULES)
    assert plan.actions == []
    obs = container_state(w, None, plan.history[K])
    assert (obs.state, obs.reason) == ("failed", "cannot run this assignment: bad")


def test_new_uid_gets_a_fresh_history() -> None:
    old = History("u0", "h1", failures=5, gave_up="crash loop")
    plan = reconcile([want(uid="u1")], [], {K: old}, 1.0, RULES)
    assert kinds(plan.actions) == [("create", None, "assigned")]
    assert plan.history[K] == History("u1", "h1")


def test_states_while_an_operation_runs() -> None:
    for pending in ("creating", "pulling", "draining"):
        assert container_state(want(), None, None, pending).state == pending  # type: ignore[arg-type]
    assert container_state(want(), None, None).state == "creating"
    assert container_state(want(), have("removing"), None).state == "draining"
    assert container_state(want(), have("restarting"), None).state == "running"
    # Someone else's container under our name (uid mismatch) is not reported as ours.
    assert container_state(want(uid="u2"), have(uid="u1"), None).container_id == ""
