"""The node channel: agents report their inventory and containers, and long-poll for
the containers assigned to them.

Identity: the admin guide gives every node agent the same token, so the token alone
cannot tell node1 from node2. Each agent therefore sends a random agent id
(`AGENT_HEADER`) that it keeps for its lifetime. The first report binds the node to that
id; while the bound agent keeps reporting, another agent claiming the same node name is
refused (409). Once the bound agent has been silent longer than the readiness window,
a new agent (a restarted or re-installed one) may take over, and an event says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from dora.api.context import ApiContext
from dora.api.errors import conflict, invalid, not_found, require_unicode
from dora.api.identity import GLOBAL, Caller
from dora.api.schemas import Assignment, Assignments, ContainerReport, NodeReport, ReportOut
from dora.api.services.resources import CAS_RETRIES
from dora.api.services.views import node_status
from dora.auth.tickets import public_key_for
from dora.store import Change, Conflict, CursorExpired, Event, Key, NotFound, Patch, Record

AGENT_HEADER = "X-Dora-Agent"
LONG_POLL_SLICE_S = 1.0


def _node_key(zone: str, name: str) -> Key:
    return Key("Node", zone, GLOBAL, name)


async def _node(ctx: ApiContext, zone: str, name: str) -> Record:
    try:
        return await ctx.store.get(_node_key(zone, name))
    except NotFound:
        raise not_found(
            f"node {name!r} is not registered in zone {zone!r}: apply a Node named "
            f"{name!r} (kind: Node, metadata.zone: {zone}) first"
        ) from None


def _check_agent(ctx: ApiContext, node: Record, agent: str) -> bool:
    """True when `agent` takes over the node from another agent."""
    observed = node.observed or {}
    bound = observed.get("agent")
    if not bound or bound == agent:
        return False
    last_seen = observed.get("last_seen")
    silent = ctx.clock() - float(last_seen) if isinstance(last_seen, int | float) else 1e9
    if silent <= ctx.settings.node_ready_s:
        raise conflict(
            f"node {node.key.name} is reported by another agent (last seen {silent:.0f} s ago); "
            f"stop it first, or wait {ctx.settings.node_ready_s:.0f} s after it stops"
        )
    return True


def _node_observed(report: NodeReport, agent: str, now: float) -> dict[str, Any]:
    observed = report.model_dump(exclude={"containers", "complete"})
    observed["agent"] = agent
    observed["last_seen"] = now
    observed["container_count"] = len(report.containers)
    return observed


async def report(
    ctx: ApiContext, caller: Caller, zone: str, name: str, agent: str, body: NodeReport
) -> ReportOut:
    caller.require("Node", "Report", zone, GLOBAL)
    if not agent or len(agent) > 128:
        raise invalid(f"missing or malformed {AGENT_HEADER} header", field=AGENT_HEADER)
    require_unicode(body.model_dump())
    now = ctx.clock()
    for _ in range(CAS_RETRIES):
        node = await _node(ctx, zone, name)
        took_over = _check_agent(ctx, node, agent)
        try:
            node = await ctx.store.update(
                node.key,
                Patch(observed=_node_observed(body, agent, now)),
                expected_version=node.version,
                actor=f"node:{name}",
            )
        except Conflict:
            continue
        if took_over:
            await ctx.store.add_event(
                Event(node.key, "AgentReplaced", f"a new agent took over node {name}", "api", now)
            )
        break
    else:
        raise conflict(f"node {name} is being changed by someone else; report again")
    await _update_containers(ctx, zone, name, body.containers, now)
    return ReportOut(
        node=name,
        status=node_status(node, now=now, ready_s=ctx.settings.node_ready_s),
        assignments_cursor=fingerprint(await _assigned(ctx, zone, name)),
        ticket_key=public_key_for(ctx.settings.secret),
    )


def _container_observed(report: ContainerReport, now: float) -> dict[str, Any]:
    observed = report.model_dump(exclude={"workspace", "name"})
    observed["reported_at"] = now
    return observed


def _changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    if old is None:
        return True
    return any(old.get(k) != v for k, v in new.items() if k != "reported_at")


async def _update_containers(
    ctx: ApiContext, zone: str, node: str, reports: list[ContainerReport], now: float
) -> None:
    """Write each reported container's observed state, when it changed and the
    container really is assigned to this node (a node cannot write another's)."""
    keys = [Key("Container", zone, r.workspace, r.name) for r in reports]
    by_key = {r.key: r for r in await ctx.store.get_many(keys)}
    for key, rep in zip(keys, reports, strict=True):
        record = by_key.get(key)
        if record is None or record.node != node or (rep.uid and rep.uid != record.uid):
            continue
        observed = _container_observed(rep, now)
        if not _changed(record.observed, observed):
            continue
        for _ in range(CAS_RETRIES):
            try:
                await ctx.store.update(
                    key,
                    Patch(observed=observed),
                    expected_version=record.version,
                    actor=f"node:{node}",
                )
                break
            except Conflict:
                try:
                    record = await ctx.store.get(key)
                except NotFound:
                    break
            except NotFound:
                break


async def _assigned(ctx: ApiContext, zone: str, node: str) -> list[Assignment]:
    records = await ctx.store.list_records("Container", zone=zone, node=node)
    return [
        Assignment(
            workspace=r.key.workspace,
            name=r.key.name,
            uid=r.uid,
            version=r.version,
            desired=r.desired,
            spec=r.spec,
            computed=r.computed,
        )
        for r in records
    ]


def fingerprint(assignments: list[Assignment]) -> str:
    """Changes when what the node must run changes — not when only observed state does."""
    digest = hashlib.sha256()
    for a in sorted(assignments, key=lambda a: (a.workspace, a.name)):
        part = [a.workspace, a.name, a.uid, a.desired, a.spec, a.computed]
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


async def assignments(
    ctx: ApiContext, caller: Caller, zone: str, name: str, since: str | None, wait_s: float
) -> Assignments:
    """What `name` must run; with `since`, wait (up to `wait_s`) until it differs."""
    caller.require("Node", "Report", zone, GLOBAL)
    await _node(ctx, zone, name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(wait_s, 0.0), ctx.settings.long_poll_max_s)
    cursor = await ctx.store.head(zone)
    current = await _assigned(ctx, zone, name)
    while True:
        mark = fingerprint(current)
        remaining = deadline - loop.time()
        if since is None or mark != since or remaining <= 0 or ctx.stopping.is_set():
            return Assignments(cursor=mark, containers=current)
        try:
            # Slices of at most a second, so a server shutting down is not held up.
            changes = await ctx.store.wait_changes(
                zone, after=cursor, max_wait=min(remaining, LONG_POLL_SLICE_S)
            )
        except CursorExpired:
            cursor, relevant = await ctx.store.head(zone), True
        else:
            cursor = changes[-1].cursor if changes else cursor
            relevant = any(_moves_assignment(c) for c in changes)
        if relevant:
            current = await _assigned(ctx, zone, name)


_ASSIGNMENT_FIELDS = frozenset({"spec", "desired", "computed", "node"})


def _moves_assignment(change: Change) -> bool:
    """Whether a change may alter some node's assignments: container creates and
    deletes, and updates of the fields a node runs from — not heartbeats or container
    state reports, which would otherwise wake every waiting node many times a second."""
    if change.key.kind != "Container":
        return False
    return change.op != "update" or not _ASSIGNMENT_FIELDS.isdisjoint(change.parts)
