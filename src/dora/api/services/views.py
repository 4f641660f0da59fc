"""Records as the API shows them, with derived status strings."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dora.api.schemas import EventOut, ResourceOut
from dora.store import Event, Record
from dora.store.common import record_from_row

READY = "READY"
NOT_READY = "NOT_READY"
SCHEDULING_DISABLED = "SCHEDULING DISABLED"


def node_status(record: Record, *, now: float, ready_s: float) -> str:
    """READY when the agent reported within `ready_s` and the node is wanted;
    `, SCHEDULING DISABLED` appended when the admin switched placement off."""
    observed = record.observed or {}
    last_seen = observed.get("last_seen")
    fresh = isinstance(last_seen, int | float) and now - last_seen <= ready_s
    status = READY if fresh and record.desired == "run" else NOT_READY
    if record.spec.get("schedulingDisabled") is True:
        status += f", {SCHEDULING_DISABLED}"
    return status


def derived_status(record: Record, *, now: float, ready_s: float) -> str | None:
    kind = record.key.kind
    if kind == "Node":
        return node_status(record, now=now, ready_s=ready_s)
    return _status(
        kind, record.desired, record.node, lambda: record.computed, lambda: record.observed
    )


def _status(
    kind: str,
    desired: str,
    node: str,
    computed: Callable[[], Mapping[str, Any] | None],
    observed: Callable[[], Mapping[str, Any] | None],
) -> str | None:
    """The status of a kind whose status does not depend on the clock; the parts are
    asked for only when needed (decoding them is the cost, in `row_json`)."""
    if kind == "Container":
        if desired == "drain":
            return "draining"
        state = (observed() or {}).get("state")
        if state:
            return str(state)
        return "scheduled" if node else "pending"
    if kind == "Workload":
        if desired != "run":
            return "draining" if desired == "drain" else "paused"
        return str((computed() or {}).get("phase", "Pending"))
    return None


def record_out(record: Record, *, now: float, ready_s: float) -> ResourceOut:
    # The store's records are already typed: building without re-validating every
    # spec saves about 15% of a listing's cost.
    key = record.key
    return ResourceOut.model_construct(
        kind=key.kind,
        name=key.name,
        zone=key.zone,
        workspace=key.workspace,
        spec=record.spec,
        meta=record.meta,
        desired=record.desired,
        computed=record.computed,
        observed=record.observed,
        status=derived_status(record, now=now, ready_s=ready_s),
        version=record.version,
        uid=record.uid,
        owner=record.owner,
        node=record.node,
        parent=record.parent,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _part(text: str | None) -> Callable[[], Mapping[str, Any] | None]:
    return lambda: None if text is None else json.loads(text)


def row_json(row: Sequence[Any], *, now: float, ready_s: float) -> str:
    """`record_out` of a stored row (`SqliteStore.list_rows`) as JSON text, its spec,
    meta, computed and observed passed on as stored instead of decoded and encoded
    again (a Node, whose status needs its parts, goes through `record_out`)."""
    kind, desired, node = row[0], row[8], row[13]
    if kind == "Node":
        out = record_out(record_from_row(row), now=now, ready_s=ready_s)
        return out.model_dump_json()
    status = _status(kind, desired, node, _part(row[9]), _part(row[10]))
    return "".join(
        (
            '{"kind":', _text(kind),
            ',"name":', _text(row[3]),
            ',"zone":', _text(row[1]),
            ',"workspace":', _text(row[2]),
            ',"spec":', row[6],
            ',"meta":', row[7],
            ',"desired":', _text(desired),
            ',"computed":', row[9] if row[9] is not None else "null",
            ',"observed":', row[10] if row[10] is not None else "null",
            ',"status":', _text(status),
            ',"version":', _text(row[5]),
            ',"uid":', _text(row[4]),
            ',"owner":', _text(row[12]),
            ',"node":', _text(node),
            ',"parent":', _text(row[14]),
            ',"created_at":', _text(float(row[15])),
            ',"updated_at":', _text(float(row[16])),
            "}",
        )
    )  # fmt: skip


def event_out(event: Event) -> EventOut:
    key = event.key
    return EventOut(
        kind=key.kind,
        name=key.name,
        zone=key.zone,
        workspace=key.workspace,
        reason=event.reason,
        message=event.message,
        actor=event.actor,
        at=event.at,
    )
