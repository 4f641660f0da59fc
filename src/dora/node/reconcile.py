"""Pure reconciliation: what the agent must do to make Docker match its assignments.

`reconcile(wants, haves, history, now, rules)` looks at

* ``wants``: this node's assignments (`Want`, one per Container record),
* ``haves``: the Docker containers labelled ``dora.node=<this node>`` (`Have`),
* ``history``: per container, what happened to earlier runs (`History`),

and returns a `Plan`: the `Action` list, the updated history and when to look again.
It does no I/O and never reads the clock, so every rule below is a unit test.

State machine (the ``state`` reported for each assignment, see `container_state`)::

    (assigned) ─► creating ─► pulling ─► creating ─► running ─► exited(code)   [final]
                     │ ▲          │                   │  ▲  │
                     │ └─ retry ◄─┘ (backoff)          ▼  │  └─► restarting ─► running
                     └─► failed(reason)  [final]    paused      (policy, backoff)
                                                                  └─► failed "crash loop: …"
    desired=drain: any ─► draining ─► deleted

Final states — ``exited`` (the policy does not restart it) and ``failed`` (the agent
gave up) — are the only ones the scheduler may act on (release the booking, or place
the container again). While the agent still retries, it reports ``creating`` (a start
failed, the reason says why and that it retries) or ``restarting`` (it exited and
will be started again after the backoff): both mean "still this node's business".

Rules

* desired ``run``, no container → create it (after a pending backoff).
* desired ``run``, a container of another uid under the same name → remove it, create
  the new one (`Action` ``create`` with ``container_id`` = the one to replace).
* desired ``drain`` → stop (grace period) and remove; ``deleted`` once gone.
* desired ``pause`` → ``docker pause`` a running container; back to ``run`` → unpause.
  Nothing is created while paused.
* A ``dora.node=<this node>`` container that no assignment names (a stray) is removed.
  Containers without that label are never in ``haves``: they are not ours.
* An exited container is restarted per ``restartPolicy``: ``Never`` keeps it exited
  (its exit code is reported); ``OnFailure`` restarts on a non-zero exit; ``Always``
  restarts on any exit. A run that ends within ``fast_failure_s`` of starting is a
  *fast failure*; each consecutive one doubles the delay before the next start
  (``backoff_s``, 2×, 4×… capped at ``backoff_max_s``); a longer run resets the count
  and restarts at once. After ``crash_loop_limit`` consecutive fast failures the
  container is ``failed`` with reason ``crash loop: …`` and is left exited (its logs
  stay readable) until the assignment changes (new uid or new spec/computed).
* A create or start that fails (pull error, Docker error) counts as a fast failure
  too; a permanent one (no NVIDIA runtime, ``pullPolicy: Never`` without the image,
  an assignment that cannot be parsed) gives up at once.
* Containers with an operation in flight (``busy``) are left alone this round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from dora.node.spec import Desired, RestartPolicy

Key = tuple[str, str]
"""(workspace, container name)."""

ActionKind = Literal["create", "start", "remove", "pause", "unpause"]
State = Literal[
    "creating",
    "pulling",
    "running",
    "restarting",
    "paused",
    "exited",
    "failed",
    "draining",
    "deleted",
]

_RUNNING = frozenset({"running", "restarting"})
_EXITED = frozenset({"exited", "dead"})


@dataclass(frozen=True)
class RestartRules:
    backoff_s: float = 1.0
    """Delay before the restart that follows the first fast failure."""
    backoff_max_s: float = 300.0
    fast_failure_s: float = 10.0
    """A run shorter than this (start → exit) is a fast failure."""
    crash_loop_limit: int = 5
    """Consecutive fast failures before giving up."""

    def backoff(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.backoff_s * 2 ** (failures - 1), self.backoff_max_s))


@dataclass(frozen=True)
class Want:
    """One assignment, reduced to what reconciliation needs."""

    key: Key
    uid: str
    desired: Desired
    run_hash: str = ""
    restart_policy: RestartPolicy = "Never"
    error: str | None = None
    """Why this assignment cannot be run at all (it is then reported ``failed``)."""


@dataclass(frozen=True)
class Have:
    """One Docker container carrying this node's labels."""

    key: Key
    container_id: str
    uid: str
    run_hash: str
    status: str
    """Docker's ``State.Status``: created, running, paused, restarting, removing, exited,
    dead."""
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    oom_killed: bool = False
    error: str = ""
    """Docker's ``State.Error`` (why the last start failed)."""


@dataclass(frozen=True)
class History:
    """What happened to earlier runs of one container (one uid + run hash)."""

    uid: str
    run_hash: str
    failures: int = 0
    """Consecutive fast failures (fast exits and failed starts)."""
    restarts: int = 0
    counted_finish: float | None = None
    """``finished_at`` of the last exit already counted (each exit counts once)."""
    retry_at: float | None = None
    """No (re)start before this time."""
    last_error: str | None = None
    """Why the last run ended or start failed, while a retry is pending."""
    gave_up: str | None = None
    """Set once retrying stopped; cleared only by a new uid or run hash."""


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    key: Key
    container_id: str | None = None
    """The Docker container acted on; for ``create``, the one to remove first."""
    why: str = ""


@dataclass(frozen=True)
class Plan:
    actions: list[Action]
    history: dict[Key, History]
    wake_at: float | None
    """When a backoff ends and reconciliation should run again (None: no timer)."""


@dataclass(frozen=True)
class Observed:
    """What the agent reports for one assignment."""

    state: State
    reason: str | None = None
    exit_code: int | None = None
    container_id: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    restarts: int = 0


def should_restart(policy: RestartPolicy, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def describe_exit(have: Have) -> str:
    if have.oom_killed:
        return f"killed: out of memory (exit code {have.exit_code})"
    if have.exit_code is not None and have.exit_code > 128:
        return f"exited with code {have.exit_code} (signal {have.exit_code - 128})"
    return f"exited with code {have.exit_code}"


def fresh_history(want: Want, old: History | None) -> History:
    """The history for `want`: kept while uid and run hash match, else a new one."""
    if old is not None and old.uid == want.uid and old.run_hash == want.run_hash:
        return old
    return History(uid=want.uid, run_hash=want.run_hash)


def count_exit(hist: History, have: Have, policy: RestartPolicy, rules: RestartRules) -> History:
    """Account for the exit `have` shows, once; schedule the restart or give up."""
    if have.finished_at is None or have.finished_at == hist.counted_finish:
        return hist
    if not should_restart(policy, have.exit_code):
        return replace(hist, counted_finish=have.finished_at, retry_at=None, last_error=None)
    ran = have.finished_at - have.started_at if have.started_at is not None else 0.0
    fast = ran < rules.fast_failure_s
    failures = hist.failures + 1 if fast else 0
    why = describe_exit(have)
    if fast and failures >= rules.crash_loop_limit:
        return replace(
            hist,
            counted_finish=have.finished_at,
            failures=failures,
            retry_at=None,
            last_error=why,
            gave_up=(
                f"crash loop: {why}; it failed {failures} times in a row, each within "
                f"{rules.fast_failure_s:g} s of starting; not restarting until the "
                "assignment changes"
            ),
        )
    return replace(
        hist,
        counted_finish=have.finished_at,
        failures=failures,
        retry_at=have.finished_at + rules.backoff(failures),
        last_error=why,
    )


def record_start_failure(
    hist: History, now: float, reason: str, *, permanent: bool, rules: RestartRules
) -> History:
    """A create/pull/start failed: back off, or give up (permanent, or too many)."""
    failures = hist.failures + 1
    if permanent:
        return replace(hist, failures=failures, retry_at=None, last_error=reason, gave_up=reason)
    if failures >= rules.crash_loop_limit:
        return replace(
            hist,
            failures=failures,
            retry_at=None,
            last_error=reason,
            gave_up=f"gave up after {failures} failed starts: {reason}",
        )
    return replace(
        hist, failures=failures, retry_at=now + rules.backoff(failures), last_error=reason
    )


def record_started(hist: History, *, restart: bool) -> History:
    """A (re)start succeeded: the error is no longer current."""
    return replace(
        hist,
        retry_at=None,
        last_error=None,
        restarts=hist.restarts + 1 if restart else hist.restarts,
    )


def _pick(haves: list[Have], uid: str) -> tuple[Have, list[Have]]:
    """The container that stands for a key, and duplicates to remove."""
    ranked = sorted(
        haves,
        key=lambda h: (h.uid == uid, h.status in _RUNNING, h.started_at or 0.0),
        reverse=True,
    )
    return ranked[0], ranked[1:]


def reconcile(
    wants: Iterable[Want],
    haves: Iterable[Have],
    history: Mapping[Key, History],
    now: float,
    rules: RestartRules,
    busy: frozenset[Key] = frozenset(),
) -> Plan:
    actions: list[Action] = []
    new_history: dict[Key, History] = {}
    wake_at: float | None = None

    def wake(at: float | None) -> None:
        nonlocal wake_at
        if at is not None and (wake_at is None or at < wake_at):
            wake_at = at

    by_key: dict[Key, list[Have]] = {}
    for item in haves:
        by_key.setdefault(item.key, []).append(item)
    want_keys: set[Key] = set()

    for want in wants:
        key = want.key
        want_keys.add(key)
        hist = fresh_history(want, history.get(key))
        if want.error is not None and hist.gave_up is None:
            hist = replace(hist, gave_up=want.error, last_error=want.error)
        group = by_key.get(key, [])
        have: Have | None = None
        if group:
            chosen, duplicates = _pick(group, want.uid)
            have = chosen
            if key not in busy:
                actions.extend(
                    Action("remove", key, d.container_id, "duplicate") for d in duplicates
                )
        if have is not None and have.uid == want.uid and have.status in _EXITED:
            hist = count_exit(hist, have, want.restart_policy, rules)
        new_history[key] = hist
        if key in busy:
            continue

        if want.desired == "drain":
            if have is not None:
                actions.append(Action("remove", key, have.container_id, "drain"))
            continue
        if have is not None and have.uid != want.uid:
            if want.desired == "run" and hist.gave_up is None and _due(hist, now):
                actions.append(Action("create", key, have.container_id, "replace"))
            else:
                actions.append(Action("remove", key, have.container_id, "replaced"))
                wake(hist.retry_at)
            continue
        if want.desired == "pause":
            if have is not None and have.status in _RUNNING:
                actions.append(Action("pause", key, have.container_id, "pause"))
            continue

        # desired == "run"
        if have is None:
            if hist.gave_up is None:
                if _due(hist, now):
                    actions.append(Action("create", key, None, "assigned"))
                else:
                    wake(hist.retry_at)
            continue
        if have.status == "paused":
            actions.append(Action("unpause", key, have.container_id, "resume"))
        elif have.status == "created":
            if hist.gave_up is None:
                if _due(hist, now):
                    actions.append(Action("start", key, have.container_id, "created"))
                else:
                    wake(hist.retry_at)
        elif (
            have.status in _EXITED
            and hist.gave_up is None
            and should_restart(want.restart_policy, have.exit_code)
        ):
            if not _due(hist, now):
                wake(hist.retry_at)
            elif have.run_hash != want.run_hash:
                actions.append(Action("create", key, have.container_id, "restart-changed"))
            else:
                actions.append(Action("start", key, have.container_id, "restart"))

    for key, strays in by_key.items():
        if key in want_keys or key in busy:
            continue
        actions.extend(Action("remove", key, h.container_id, "stray") for h in strays)
    return Plan(actions=actions, history=new_history, wake_at=wake_at)


def _due(hist: History, now: float) -> bool:
    return hist.retry_at is None or hist.retry_at <= now


def container_state(
    want: Want,
    have: Have | None,
    hist: History | None,
    pending: State | None = None,
) -> Observed:
    """The state to report for `want`, from Docker's view, the history and the
    operation in flight (``pending``: creating, pulling, draining)."""
    restarts = hist.restarts if hist is not None else 0
    gave_up = hist.gave_up if hist is not None else None
    last_error = hist.last_error if hist is not None else None
    ours = have if have is not None and have.uid == want.uid else None

    def seen(state: State, reason: str | None = None, exit_code: int | None = None) -> Observed:
        if ours is None:
            return Observed(state, reason, exit_code, restarts=restarts)
        return Observed(
            state,
            reason,
            exit_code,
            ours.container_id,
            started_at=ours.started_at,
            finished_at=ours.finished_at,
            restarts=restarts,
        )

    if pending is not None:
        return seen(pending)
    if want.desired == "drain":
        if have is None:
            return Observed("deleted", restarts=restarts)
        return Observed("draining", container_id=have.container_id, restarts=restarts)
    if ours is None:
        if gave_up is not None:
            return seen("failed", gave_up)
        if last_error is not None:
            return seen("creating", f"{last_error}; retrying")
        if want.desired == "pause":
            return seen("paused", "paused before it started")
        return seen("creating")
    status = ours.status
    if status in _RUNNING:
        return seen("running")
    if status == "paused":
        return seen("paused")
    if status == "removing":
        return seen("draining")
    if status == "created":
        if gave_up is not None:
            return seen("failed", gave_up)
        if last_error is not None:
            return seen("creating", f"{last_error}; retrying")
        return seen("creating")
    # exited / dead
    code = ours.exit_code
    if gave_up is not None:
        return seen("failed", gave_up, code)
    if hist is not None and hist.retry_at is not None:
        return seen(
            "restarting", f"{describe_exit(ours)}; restartPolicy {want.restart_policy}", code
        )
    return seen("exited", describe_exit(ours) if ours.oom_killed else None, code)
