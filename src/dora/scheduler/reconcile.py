"""What should exist: one workload and its containers → actions and a phase.

Pure: the caller passes the workload, its container records, ``now`` and the set of
lost nodes (NOT_READY longer than the grace period; the loop decides). Every action
names one container and carries an event reason and message; a container gets at most
one action per call, and calling again on the updated records converges.

Rules, in the order they apply to each container
    1. **Stopping** — the workload is deleted (``desired=drain``) or paused, its
       maxRunTime is exceeded, the container's index is above the replica count (or
       its name is not ``<workload>.<n>``), its spec hash is old, or it is already
       draining. A container that holds nothing to stop (never placed, already
       stopped, or on a lost node) is **deleted** at once (its booking goes with it);
       a live one is set to **drain** once and then waited for: the node agent stops
       it and reports, and only then is the record deleted, so one replica never has
       two live copies.
    2. **Node lost** (a live container on a lost node) — ``Always``/``OnFailure``:
       **recreate** (booking released, placed again, same name; when the node returns,
       its agent removes the stale copy); ``Never``: **mark failed** "node lost".
    3. **Stopped** (exited / failed / deleted) — ``Always``: recreate; ``OnFailure``:
       recreate unless it exited 0; otherwise **release** its GPUs/CPUs at once while
       the record stays for the workload's phase and logs.
    4. **Crash-loop backoff** — a ``failed`` container (the agent gave up: a crash
       loop, or a start that cannot succeed on that node) is not recreated at once,
       or it would crash-loop again elsewhere, round the whole cluster. It releases
       its booking, then waits ``Backoff.delay(recreations)`` from when it stopped
       (10 s, 20 s, 40 s … capped at 5 min by default) and is then recreated with
       ``recreations + 1``. A run that lasted longer than the cap resets the count.
       The workload stays ``Pending`` with the wait in its message.

Creating
    Missing indices in ``1..replicas`` are created together (lowest first), so the
    whole gang reaches placement in one pass — but only once no container of the
    workload has an old spec hash and none of ``1..replicas`` is still draining.

Replace strategy (spec-hash change)
    The whole old gang is drained at once, then the new gang is created. GPU jobs are
    usually gangs whose replicas talk to each other; mixing versions (rolling) would
    break them, and the old gang's GPUs are needed by the new one anyway.

maxRunTime
    Counted from the workload's first start (``WorkloadView.started_at``; when unset,
    the earliest container start, returned as ``ReconcileResult.started_at`` for the
    loop to store). At the limit every container is drained with a
    ``MaxRunTimeExceeded`` event; the workload ends ``Failed`` and is not restarted.
    A workload that already Completed is left alone.

Phases
    ``Deleted`` (drained and no containers left: ``remove_workload``), ``Draining``,
    ``Paused``, ``Completed`` (Never/OnFailure: every replica exited 0), ``Failed``
    (Never: every replica stopped, one unsuccessfully; or maxRunTime exceeded),
    ``Running`` (every replica running, paused or finished, one running), ``Paused``
    also when every replica is paused or finished and one is paused (a *container*
    pause: frozen in place, GPUs kept), ``Idle`` (zero replicas), else ``Pending``.
    The message counts paused replicas apart: "1/2 replicas running, 1 paused".

Paused containers
    A container whose ``desired`` is ``pause`` (the API's container pause) is a live
    replica like a running one: no rule stops, releases or recreates it for being
    paused, so the scheduler never fights the API over it. Deleting, pausing or
    changing the workload still drains it as usual.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Action",
    "ActionKind",
    "Backoff",
    "ContainerState",
    "ContainerView",
    "Desired",
    "EventReason",
    "Phase",
    "ReconcileResult",
    "RestartPolicy",
    "WorkloadView",
    "reconcile",
    "recreations_after",
    "replica_index",
    "replica_name",
]


class Desired(StrEnum):
    """The API-owned wish for a record."""

    RUN = "run"
    DRAIN = "drain"
    PAUSE = "pause"


class RestartPolicy(StrEnum):
    """``config.restartPolicy``."""

    NEVER = "Never"
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"


class ContainerState(StrEnum):
    """Observed container state (from the node agent); PENDING = nothing reported."""

    PENDING = "pending"
    CREATING = "creating"
    PULLING = "pulling"
    RUNNING = "running"
    PAUSED = "paused"
    """Frozen by ``docker pause`` (container ``desired=pause``): live, booking kept."""
    DRAINING = "draining"
    EXITED = "exited"
    FAILED = "failed"
    DELETED = "deleted"
    UNKNOWN = "unknown"
    """Any other Docker state (created, restarting…): treated as live."""

    @classmethod
    def parse(cls, value: str | None) -> ContainerState:
        """Map a reported state string; empty/queue/scheduled mean not started yet."""
        if value is None or value in ("", "queue", "scheduled"):
            return cls.PENDING
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


_STOPPED = frozenset({ContainerState.EXITED, ContainerState.FAILED, ContainerState.DELETED})


class Phase(StrEnum):
    """The workload's summarised state."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    DRAINING = "Draining"
    PAUSED = "Paused"
    DELETED = "Deleted"
    IDLE = "Idle"


class ActionKind(StrEnum):
    """What the loop must do to a container record."""

    CREATE = "create"
    """Insert the record (unplaced): the scheduler will place it."""
    DRAIN = "drain"
    """Set ``desired=drain``: the node agent stops it and reports."""
    DELETE = "delete"
    """Delete the record and its booking."""
    RELEASE = "release"
    """Drop the booking (node, GPUs, CPUs); keep the record."""
    RECREATE = "recreate"
    """Drop the booking and the observed state: the same name is placed again."""
    MARK_FAILED = "mark_failed"
    """Record it as failed (reason in the message) and drop the booking."""


class EventReason(StrEnum):
    """Event reasons attached to actions (shown by ``dora describe``)."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    SPEC_CHANGED = "SpecChanged"
    DELETING = "Deleting"
    PAUSING = "Pausing"
    MAX_RUN_TIME_EXCEEDED = "MaxRunTimeExceeded"
    NODE_LOST = "NodeLost"
    DRAINED = "Drained"
    COMPLETED = "Completed"
    FAILED = "Failed"
    RESTARTED = "Restarted"
    BACK_OFF = "BackOff"


@dataclass(frozen=True, slots=True)
class WorkloadView:
    """The workload fields reconcile needs."""

    name: str
    desired: Desired = Desired.RUN
    replicas: int = 1
    spec_hash: str = ""
    restart_policy: RestartPolicy = RestartPolicy.NEVER
    max_run_time_s: float | None = None
    started_at: float | None = None
    """First time any replica started (the maxRunTime clock)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a ``failed`` container waits before it is recreated (rule 4)."""

    base_s: float = 10.0
    max_s: float = 300.0

    def delay(self, recreations: int) -> float:
        """``base_s`` × 2^recreations, at most ``max_s``."""
        return min(self.max_s, self.base_s * 2.0 ** min(recreations, 32))


@dataclass(frozen=True, slots=True)
class ContainerView:
    """One container record: ``node`` is where its booking is (None = none held)."""

    name: str
    spec_hash: str = ""
    desired: Desired = Desired.RUN
    state: ContainerState = ContainerState.PENDING
    exit_code: int | None = None
    node: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    """When it stopped (the agent's ``finished_at``, else when that was reported)."""
    recreations: int = 0
    """How often the scheduler recreated this replica after a failure."""

    @property
    def stopped(self) -> bool:
        """The agent reported it no longer runs."""
        return self.state in _STOPPED

    @property
    def succeeded(self) -> bool:
        """It exited with code 0."""
        return self.state is ContainerState.EXITED and self.exit_code == 0


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do to one container, with the event that explains it."""

    kind: ActionKind
    container: str
    reason: EventReason
    message: str


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """Actions to take and the workload's phase once they are taken."""

    phase: Phase
    actions: tuple[Action, ...]
    message: str
    remove_workload: bool = False
    started_at: float | None = None

    def names(self, kind: ActionKind) -> tuple[str, ...]:
        """Containers that get ``kind``, in action order."""
        return tuple(a.container for a in self.actions if a.kind is kind)


def replica_name(workload: str, index: int) -> str:
    """``<workload>.<n>``, n from 1."""
    return f"{workload}.{index}"


def replica_index(workload: str, container: str) -> int | None:
    """The ``n`` of ``<workload>.<n>``, or None when the name is not a replica name."""
    prefix, dot, suffix = container.rpartition(".")
    if not dot or prefix != workload or not suffix.isdigit() or suffix.startswith("0"):
        return None
    return int(suffix)


def reconcile(
    workload: WorkloadView,
    containers: Iterable[ContainerView],
    now: float,
    lost_nodes: frozenset[str] = frozenset(),
    backoff: Backoff = Backoff(),
) -> ReconcileResult:
    """Decide the actions and phase for one workload (see the module docstring)."""
    records = sorted(containers, key=lambda c: _sort_key(workload.name, c.name))
    if not records:
        return _without_containers(workload, now)
    return _general(workload, records, now, lost_nodes, backoff)


def _general(
    workload: WorkloadView,
    records: list[ContainerView],
    now: float,
    lost_nodes: frozenset[str],
    backoff: Backoff,
) -> ReconcileResult:
    """`reconcile` over ``records`` (sorted by `_sort_key`), the rules in full."""
    starts = [c.started_at for c in records if c.started_at is not None]
    started_at = workload.started_at
    if started_at is None and starts:
        started_at = min(starts)
    wanted = {
        index: c
        for c in records
        if (index := replica_index(workload.name, c.name)) is not None
        and index <= workload.replicas
    }
    outcome = _outcome(workload, wanted, lost_nodes)
    overtime = (
        workload.desired is Desired.RUN
        and outcome is None
        and workload.max_run_time_s is not None
        and started_at is not None
        and now - started_at >= workload.max_run_time_s
    )
    waits: list[str] = []
    actions = [
        action
        for record in records
        if (action := _decide(workload, record, overtime, lost_nodes, now, backoff, waits))
        is not None
    ]
    actions.sort(key=lambda a: _action_order(workload.name, a))
    actions.extend(_creates(workload, records, overtime, outcome))
    phase, message = _phase(workload, records, actions, outcome, overtime)
    if waits and phase in (Phase.PENDING, Phase.RUNNING):
        phase, message = Phase.PENDING, f"{message}; {'; '.join(waits)}"
    return ReconcileResult(
        phase=phase,
        actions=tuple(actions),
        message=message,
        remove_workload=workload.desired is Desired.DRAIN and not records,
        started_at=started_at,
    )


def _without_containers(workload: WorkloadView, now: float) -> ReconcileResult:
    """`reconcile` of a workload that has no container (every new workload, once):
    the same result as the rules in full (`_general` over no records; a test
    compares them), without their per-container machinery."""
    started_at = workload.started_at
    desired = workload.desired
    if desired is Desired.DRAIN:
        return ReconcileResult(Phase.DELETED, (), "deleted", True, started_at)
    if desired is Desired.PAUSE:
        return ReconcileResult(Phase.PAUSED, (), "paused", False, started_at)
    limit = workload.max_run_time_s
    if limit is not None and started_at is not None and now - started_at >= limit:
        return ReconcileResult(
            Phase.FAILED, (), f"maxRunTime {limit:g}s exceeded", False, started_at
        )
    replicas = workload.replicas
    if replicas == 0:
        return ReconcileResult(Phase.IDLE, (), "0 replicas", False, started_at)
    name = workload.name
    creates = tuple(
        Action(
            ActionKind.CREATE,
            f"{name}.{index}",
            EventReason.SCALE_UP,
            f"replica {index}/{replicas} of {name} added",
        )
        for index in range(1, replicas + 1)
    )
    return ReconcileResult(
        Phase.PENDING, creates, f"0/{replicas} replicas running", False, started_at
    )


def _sort_key(workload: str, name: str) -> tuple[int, int, str]:
    index = replica_index(workload, name)
    return (0, index, name) if index is not None else (1, 0, name)


def _action_order(workload: str, action: Action) -> tuple[int, int, str]:
    """Stops first (highest index first, the scale-down order), then the rest by index."""
    index = replica_index(workload, action.container)
    position = index if index is not None else 1 << 30
    if action.kind in (ActionKind.DRAIN, ActionKind.DELETE):
        return (0, -position, action.container)
    return (1, position, action.container)


def _lost(record: ContainerView, lost_nodes: frozenset[str]) -> bool:
    return record.node is not None and record.node in lost_nodes and not record.stopped


def _outcome(
    workload: WorkloadView, wanted: dict[int, ContainerView], lost_nodes: frozenset[str]
) -> Phase | None:
    """Completed / Failed when a run-to-completion workload is finished, else None."""
    if workload.restart_policy is RestartPolicy.ALWAYS or workload.replicas < 1:
        return None
    if len(wanted) < workload.replicas:
        return None
    current = [c for c in wanted.values() if c.spec_hash == workload.spec_hash]
    if len(current) < workload.replicas or any(c.desired is Desired.DRAIN for c in current):
        return None
    if all(c.succeeded for c in current):
        return Phase.COMPLETED
    if workload.restart_policy is RestartPolicy.ON_FAILURE:
        return None
    if all(c.stopped or _lost(c, lost_nodes) for c in current):
        return Phase.FAILED
    return None


def _stop_reason(
    workload: WorkloadView, record: ContainerView, overtime: bool
) -> tuple[EventReason, str] | None:
    """Why this container must go, or None when it is a wanted replica."""
    if workload.desired is Desired.DRAIN:
        return EventReason.DELETING, f"workload {workload.name} deleted"
    if workload.desired is Desired.PAUSE:
        return EventReason.PAUSING, f"workload {workload.name} paused"
    if overtime:
        return (
            EventReason.MAX_RUN_TIME_EXCEEDED,
            f"maxRunTime {workload.max_run_time_s:g}s exceeded",
        )
    index = replica_index(workload.name, record.name)
    if index is None:
        return EventReason.SCALE_DOWN, f"{record.name} is not a replica of {workload.name}"
    if index > workload.replicas:
        return EventReason.SCALE_DOWN, f"scaled down to {workload.replicas} replicas"
    if record.spec_hash != workload.spec_hash:
        return EventReason.SPEC_CHANGED, "spec changed: the whole gang is replaced"
    if record.desired is Desired.DRAIN:
        return EventReason.DRAINED, "drained"
    return None


def _decide(
    workload: WorkloadView,
    record: ContainerView,
    overtime: bool,
    lost_nodes: frozenset[str],
    now: float,
    backoff: Backoff,
    waits: list[str],
) -> Action | None:
    """At most one action for one container (a crash-loop wait is noted in `waits`)."""
    name = record.name
    lost = _lost(record, lost_nodes)
    stop = _stop_reason(workload, record, overtime)
    if stop is not None:
        reason, message = stop
        if lost:
            return Action(
                ActionKind.DELETE, name, EventReason.NODE_LOST, f"node {record.node} lost"
            )
        if record.node is None or record.stopped:
            return Action(ActionKind.DELETE, name, reason, message)
        if record.desired is not Desired.DRAIN:
            return Action(ActionKind.DRAIN, name, reason, message)
        return None
    policy = workload.restart_policy
    if lost:
        if policy is RestartPolicy.NEVER:
            return Action(
                ActionKind.MARK_FAILED, name, EventReason.NODE_LOST, f"node {record.node} lost"
            )
        return Action(
            ActionKind.RECREATE,
            name,
            EventReason.NODE_LOST,
            f"node {record.node} lost: placing {name} again",
        )
    if not record.stopped:
        return None
    if policy is RestartPolicy.ALWAYS or (
        policy is RestartPolicy.ON_FAILURE and not record.succeeded
    ):
        ready_at = _recreate_at(record, backoff)
        if ready_at is not None and now < ready_at:
            waits.append(
                f"{name} failed: starting again in {ready_at - now:.0f} s "
                f"(crash-loop backoff, restart {record.recreations + 1})"
            )
            if record.node is None:
                return None
            return Action(
                ActionKind.RELEASE,
                name,
                EventReason.BACK_OFF,
                f"{_ended(record)}: GPUs/CPUs released; restart {record.recreations + 1} "
                f"in {backoff.delay(record.recreations):g} s (crash-loop backoff)",
            )
        return Action(
            ActionKind.RECREATE,
            name,
            EventReason.RESTARTED,
            f"{_ended(record)}; restartPolicy {policy.value}: starting again",
        )
    if record.node is None:
        return None
    reason = EventReason.COMPLETED if record.succeeded else EventReason.FAILED
    return Action(ActionKind.RELEASE, name, reason, f"{_ended(record)}: GPUs/CPUs released")


def _ran_long(record: ContainerView, backoff: Backoff) -> bool:
    """It ran longer than the backoff cap before it stopped: no crash loop."""
    if record.started_at is None or record.stopped_at is None:
        return False
    return record.stopped_at - record.started_at >= backoff.max_s


def _recreate_at(record: ContainerView, backoff: Backoff) -> float | None:
    """When a ``failed`` container may be recreated (None: at once)."""
    if record.state is not ContainerState.FAILED or record.stopped_at is None:
        return None
    if _ran_long(record, backoff):
        return None
    return record.stopped_at + backoff.delay(record.recreations)


def recreations_after(record: ContainerView, backoff: Backoff = Backoff()) -> int:
    """The ``recreations`` count the recreated copy of `record` carries."""
    if record.state is not ContainerState.FAILED:
        return record.recreations
    return 0 if _ran_long(record, backoff) else record.recreations + 1


def _ended(record: ContainerView) -> str:
    if record.state is ContainerState.EXITED:
        return f"{record.name} exited with code {record.exit_code}"
    return f"{record.name} {record.state.value}"


def _creates(
    workload: WorkloadView,
    records: list[ContainerView],
    overtime: bool,
    outcome: Phase | None,
) -> list[Action]:
    """Missing replicas, all at once, when nothing of the old gang is in the way."""
    if workload.desired is not Desired.RUN or overtime or outcome is not None:
        return []
    present: set[int] = set()
    for record in records:
        if record.spec_hash != workload.spec_hash:
            return []  # replacing: the new gang waits until the old one is gone
        index = replica_index(workload.name, record.name)
        if index is None or index > workload.replicas:
            continue
        if record.desired is Desired.DRAIN:
            return []  # a wanted index is still being stopped: keep the gang whole
        present.add(index)
    missing = [i for i in range(1, workload.replicas + 1) if i not in present]
    return [
        Action(
            ActionKind.CREATE,
            replica_name(workload.name, index),
            EventReason.SCALE_UP,
            f"replica {index}/{workload.replicas} of {workload.name} added",
        )
        for index in missing
    ]


def _phase(
    workload: WorkloadView,
    records: list[ContainerView],
    actions: list[Action],
    outcome: Phase | None,
    overtime: bool,
) -> tuple[Phase, str]:
    """The phase once ``actions`` are applied."""
    by_name = {a.container: a for a in actions}
    remaining = [r for r in records if _kind(by_name, r.name) is not ActionKind.DELETE]
    if workload.desired is Desired.DRAIN:
        if not records:
            return Phase.DELETED, "deleted"
        return Phase.DRAINING, f"deleting: {len(remaining)} containers left"
    if workload.desired is Desired.PAUSE:
        if not remaining:
            return Phase.PAUSED, "paused"
        return Phase.DRAINING, f"pausing: {len(remaining)} containers left"
    if overtime:
        if not remaining:
            return Phase.FAILED, f"maxRunTime {workload.max_run_time_s:g}s exceeded"
        return Phase.DRAINING, f"maxRunTime exceeded: {len(remaining)} containers left"
    if outcome is Phase.COMPLETED:
        return Phase.COMPLETED, f"{workload.replicas}/{workload.replicas} replicas exited 0"
    if outcome is Phase.FAILED:
        return Phase.FAILED, "a replica failed (restartPolicy Never)"
    if workload.replicas == 0:
        if remaining:
            return Phase.DRAINING, f"scaling to 0: {len(remaining)} containers left"
        return Phase.IDLE, "0 replicas"
    running = finished = paused = 0
    for record in remaining:
        index = replica_index(workload.name, record.name)
        if index is None or index > workload.replicas or record.spec_hash != workload.spec_hash:
            continue
        kind = _kind(by_name, record.name)
        if kind is ActionKind.MARK_FAILED or (
            kind in (None, ActionKind.RELEASE) and record.stopped
        ):
            finished += 1
        elif kind is None and record.state is ContainerState.RUNNING:
            running += 1
        elif kind is None and record.state is ContainerState.PAUSED:
            paused += 1
    message = f"{running}/{workload.replicas} replicas running"
    if paused:
        message += f", {paused} paused"
    if running + paused + finished == workload.replicas and (running or paused):
        return (Phase.RUNNING if running else Phase.PAUSED), message
    return Phase.PENDING, message


def _kind(by_name: dict[str, Action], name: str) -> ActionKind | None:
    action = by_name.get(name)
    return None if action is None else action.kind
