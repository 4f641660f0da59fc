"""The node agent: heartbeat, assignment long-poll, Docker events, reconciliation.

Four asyncio tasks share one `Agent`:

``assignments``
    Long-polls ``GET /assignments?since=<cursor>&wait=25``; each new cursor replaces
    the assignment set and wakes the reconciler at once.
``reconcile``
    On a wake-up (new assignments, a Docker event, an operation that ended, a backoff
    that expired) or every report interval: lists this node's containers, runs the
    pure `dora.node.reconcile.reconcile` and starts one task per action (never two on
    the same container at once). Nothing is reconciled before the first assignment
    set arrived, so a fresh agent never mistakes running work for strays.
``report``
    Every ``DORA_REPORT_INTERVAL_S`` and, debounced, right after a local change:
    inventory (`dora.node.probe`) + the state of every assigned container.
``events``
    Docker's event stream, filtered on ``dora.node``/``dora.zone``: each event drops
    the container's cached inspection and wakes the reconciler.

API errors are retried with jittered exponential backoff (capped at
``DORA_API_BACKOFF_MAX_S``); a node that is not registered, or a token that may not
report, is logged once per distinct message and retried. Stopping the agent never
stops containers: a restarted agent adopts them (same labels, same uid).

The exec/logs server on ``PORT`` (`dora.node.server`) runs in the same task group:
`serve` makes its certificate before the agent starts, so `Agent.endpoint_fingerprint`
is in the very first report; each report reply carries the API's ticket key
(`Agent.ticket_key`); `Agent.container_for` resolves a ticket's container to its
Docker id (only containers of this node, only the uid asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker

from dora.api.schemas import ContainerReport, NodeReport
from dora.node.client import ApiClient, ApiError, Backoff, ssl_verify
from dora.node.docker import DockerDriver, DriverError, gpu_mode_warning, have_from_inspect
from dora.node.probe import Probe
from dora.node.reconcile import (
    Action,
    Have,
    History,
    Key,
    State,
    Want,
    container_state,
    fresh_history,
    reconcile,
    record_start_failure,
    record_started,
)
from dora.node.settings import NodeSettings
from dora.node.spec import RunSpec, SpecError, parse_assignment

log = logging.getLogger("dora.node")

REPORT_DEBOUNCE_S = 0.02
FULL_REFRESH_S = 60.0


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a finished future's exception as retrieved (it is handled elsewhere)."""
    if not future.cancelled():
        future.exception()


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            text = Path(path).read_text().strip()
            if text:
                return text
    return ""


def agent_id(node: str, engine_id: str, machine: str | None = None) -> str:
    """Stable across restarts of the agent on the same node and engine, different for
    another node name or another engine."""
    machine = machine_id() if machine is None else machine
    blob = f"{node}\0{engine_id}\0{machine}".encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@dataclass(frozen=True)
class ContainerRef:
    """An assigned container, as the exec/logs server needs it."""

    workspace: str
    name: str
    uid: str
    container_id: str
    state: str


class Agent:
    def __init__(
        self,
        settings: NodeSettings,
        *,
        zone: str,
        driver: DockerDriver,
        api: ApiClient,
        probe: Probe,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.zone = zone
        self.driver = driver
        self.api = api
        self.probe = probe
        self.clock = clock
        self.endpoint_fingerprint = ""
        """SHA-256 of the :3001 server's certificate, reported to the API."""
        self.ticket_key = ""
        """The API's public key for :3001 tickets, from the latest report reply."""

        self.cursor: str | None = None
        self.have_assignments = False
        self.wants: dict[Key, Want] = {}
        self.runs: dict[Key, RunSpec] = {}
        self.haves: dict[Key, Have] = {}
        self.history: dict[Key, History] = {}
        self.pending: dict[Key, State] = {}
        self.tasks: dict[Key, asyncio.Task[None]] = {}
        self.op_retry_at: dict[Key, float] = {}
        self.node_status = ""
        self.reports_sent = 0

        self._wake = asyncio.Event()
        self._report_now = asyncio.Event()
        self._refetch = asyncio.Event()
        self._wake_at: float | None = None
        self._op_seq = 0
        self._done_seq: dict[Key, int] = {}
        self._last_sent: list[dict[str, Any]] | None = None
        self._last_log: dict[str, str] = {}
        self._last_full_refresh = 0.0

    # ------------------------------------------------------------------ helpers
    def _log_once(self, channel: str, level: int, message: str) -> None:
        """Log a repeated error once per distinct message (and again when it changes)."""
        if self._last_log.get(channel) != message:
            self._last_log[channel] = message
            log.log(level, "%s", message)

    def _clear_log(self, channel: str, recovered: str | None = None) -> None:
        if self._last_log.pop(channel, None) is not None and recovered:
            log.info("%s", recovered)

    def wake(self) -> None:
        self._wake.set()

    def report_soon(self) -> None:
        self._report_now.set()

    def container_for(
        self, workspace: str, name: str, uid: str | None = None
    ) -> ContainerRef | None:
        """The Docker container of an assignment of this node (None if it has none)."""
        key = (workspace, name)
        want, have = self.wants.get(key), self.haves.get(key)
        if want is None or have is None or have.uid != want.uid:
            return None
        if uid is not None and uid != want.uid:
            return None
        return ContainerRef(workspace, name, want.uid, have.container_id, have.status)

    # ------------------------------------------------------------------ assignments
    def set_assignments(self, cursor: str, items: list[dict[str, Any]]) -> None:
        wants: dict[Key, Want] = {}
        runs: dict[Key, RunSpec] = {}
        for item in items:
            key = (str(item.get("workspace", "")), str(item.get("name", "")))
            try:
                run = parse_assignment(item)
            except SpecError as exc:
                desired = str(item.get("desired") or "run")
                wants[key] = Want(
                    key=key,
                    uid=str(item.get("uid") or ""),
                    desired=desired if desired in ("run", "drain", "pause") else "run",  # type: ignore[arg-type]
                    error=f"cannot run this assignment: {exc}",
                )
                continue
            runs[key] = run
            wants[key] = Want(
                key=key,
                uid=run.uid,
                desired=run.desired,
                run_hash=run.run_hash,
                restart_policy=run.restart_policy,
            )
        self.wants, self.runs = wants, runs
        self.cursor = cursor
        self.have_assignments = True
        self.history = {k: v for k, v in self.history.items() if k in wants}
        self.wake()
        self.report_soon()

    async def assignments_loop(self) -> None:
        backoff = Backoff(cap_s=self.settings.api_backoff_max_s)
        while True:
            self._refetch.clear()
            since = self.cursor if self.have_assignments else None
            call = asyncio.ensure_future(self.api.assignments(since, self.settings.long_poll_s))
            call.add_done_callback(_consume)
            refetch = asyncio.ensure_future(self._refetch.wait())
            try:
                await asyncio.wait({call, refetch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                refetch.cancel()
                if not call.done():
                    call.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ApiError):
                        await call
            if call.cancelled():
                self.cursor = None  # asked to fetch again now: no `since`, no wait
                continue
            try:
                data = call.result()
            except ApiError as exc:
                self._log_once("assignments", logging.WARNING, f"event=assignments_failed {exc}")
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._clear_log("assignments", "event=assignments_recovered")
            cursor = str(data.get("cursor") or "")
            if not self.have_assignments or cursor != self.cursor:
                self.set_assignments(cursor, list(data["containers"]))
                log.debug("event=assignments count=%d cursor=%s", len(self.wants), cursor)

    # ------------------------------------------------------------------ reconcile
    def busy(self, since_seq: int) -> tuple[frozenset[Key], frozenset[Key]]:
        """Containers reconciliation must leave alone this pass: operations in flight,
        operations that ended while Docker was being listed (``just_done``: the listing
        may predate them), and failed operations waiting to be retried."""
        now = self.clock()
        just_done = frozenset(k for k, seq in self._done_seq.items() if seq > since_seq)
        self._done_seq = {k: seq for k, seq in self._done_seq.items() if seq > since_seq}
        self.op_retry_at = {k: at for k, at in self.op_retry_at.items() if at > now}
        return frozenset(self.tasks) | just_done | frozenset(self.op_retry_at), just_done

    async def refresh(self) -> list[Have]:
        now = time.monotonic()
        if now - self._last_full_refresh >= FULL_REFRESH_S:
            self.driver.forget_all()
            self._last_full_refresh = now
        haves = await self.driver.haves()
        self.haves = {}
        for have in haves:
            want = self.wants.get(have.key)
            current = self.haves.get(have.key)
            if current is None or (want is not None and have.uid == want.uid):
                self.haves[have.key] = have
        return haves

    async def reconcile_once(self) -> None:
        seq = self._op_seq
        haves = await self.refresh()
        if not self.have_assignments:
            return
        busy, just_done = self.busy(seq)
        now = self.clock()
        plan = reconcile(self.wants.values(), haves, self.history, now, self.settings.restart, busy)
        self.history = plan.history
        self._wake_at = plan.wake_at
        if just_done - set(self.tasks):
            self.wake()  # an operation ended while we listed: look again at once
        log.debug(
            "event=reconcile wants=%d haves=%d actions=%d busy=%d",
            len(self.wants),
            len(haves),
            len(plan.actions),
            len(busy),
        )
        for action in plan.actions:
            if action.key in self.tasks:
                continue
            self.tasks[action.key] = asyncio.create_task(
                self._run_action(action), name=f"dora-node-{action.kind}-{action.key}"
            )
        if self.container_reports() != self._last_sent:
            self.report_soon()

    async def reconcile_loop(self) -> None:
        backoff = Backoff(cap_s=self.settings.api_backoff_max_s)
        while True:
            timeout = self.settings.report_interval_s
            if self._wake_at is not None:
                timeout = max(0.0, min(timeout, self._wake_at - self.clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.reconcile_once()
            except (aiodocker.DockerError, DriverError, OSError, TimeoutError) as exc:
                self._log_once("docker", logging.ERROR, f"event=docker_unreachable error={exc}")
                await asyncio.sleep(backoff.next_delay())
                continue
            except Exception:
                log.exception("event=reconcile_crashed")
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._clear_log("docker", "event=docker_recovered")

    async def _run_action(self, action: Action) -> None:
        key = action.key
        cid = action.container_id
        try:
            if action.kind == "create":
                await self._create(action)
            elif action.kind == "start":
                assert cid is not None
                await self._start(action, cid)
            elif action.kind == "remove":
                assert cid is not None
                if action.why == "drain":
                    self._set_pending(key, "draining")
                log.info("event=remove container=%s/%s id=%s why=%s", *key, cid[:12], action.why)
                await self.driver.remove(cid)
                current = self.haves.get(key)
                if current is not None and current.container_id == cid:
                    del self.haves[key]
            elif action.kind == "pause":
                assert cid is not None
                await self.driver.pause(cid)
            elif action.kind == "unpause":
                assert cid is not None
                await self.driver.unpause(cid)
            self.op_retry_at.pop(key, None)
        except (DriverError, aiodocker.DockerError, OSError) as exc:
            reason = exc.reason if isinstance(exc, DriverError) else str(exc)
            log.warning(
                "event=%s_failed container=%s/%s reason=%s", action.kind, key[0], key[1], reason
            )
            if action.kind not in ("create", "start") or not isinstance(exc, DriverError):
                self.op_retry_at[key] = self.clock() + self.settings.report_interval_s
        except Exception:
            log.exception("event=%s_crashed container=%s/%s", action.kind, *key)
            self.op_retry_at[key] = self.clock() + self.settings.report_interval_s
        finally:
            if cid:
                self.driver.forget(cid)
            self.pending.pop(key, None)
            self.tasks.pop(key, None)
            self._op_seq += 1
            self._done_seq[key] = self._op_seq
            self.wake()
            self.report_soon()

    def _set_pending(self, key: Key, state: State) -> None:
        self.pending[key] = state
        self.report_soon()

    def _history_for(self, key: Key) -> History | None:
        want = self.wants.get(key)
        if want is None:
            return None
        return fresh_history(want, self.history.get(key))

    def _failed(self, key: Key, exc: DriverError) -> None:
        hist = self._history_for(key)
        if hist is not None:
            self.history[key] = record_start_failure(
                hist, self.clock(), exc.reason, permanent=exc.permanent, rules=self.settings.restart
            )

    async def _observe(self, key: Key, container_id: str) -> None:
        """Refresh one container's entry at once, so that a report sent before the next
        full pass shows what we just did (never a stale state with the new history)."""
        self.driver.forget(container_id)
        data = await self.driver.inspect(container_id)
        have = have_from_inspect(data) if data is not None else None
        if have is not None and have.key == key:
            self.haves[key] = have
        elif self.haves.get(key) is not None and self.haves[key].container_id == container_id:
            del self.haves[key]

    async def _create(self, action: Action) -> None:
        key = action.key
        run = self.runs.get(key)
        if run is None:
            return
        self._set_pending(key, "creating")
        if action.container_id:
            log.info("event=replace container=%s/%s old=%s", *key, action.container_id[:12])
            try:
                await self.driver.remove(action.container_id)
            except DriverError as exc:
                self._failed(key, exc)
                raise

        def on_state(state: str) -> None:
            if state in ("pulling", "creating"):
                self._set_pending(key, state)  # type: ignore[arg-type]

        try:
            cid = await self.driver.create(run, on_state)
        except DriverError as exc:
            self._failed(key, exc)
            raise
        await self._observe(key, cid)
        hist = self._history_for(key)
        if hist is not None:
            self.history[key] = record_started(hist, restart=action.why == "restart-changed")
        log.info("event=started container=%s/%s id=%s image=%s", *key, cid[:12], run.image)

    async def _start(self, action: Action, cid: str) -> None:
        key = action.key
        try:
            await self.driver.start(cid)
        except DriverError as exc:
            self._failed(key, exc)
            raise
        await self._observe(key, cid)
        hist = self._history_for(key)
        if hist is not None:
            self.history[key] = record_started(hist, restart=action.why == "restart")
        log.info("event=%s container=%s/%s id=%s", action.why, *key, cid[:12])

    # ------------------------------------------------------------------ report
    def container_reports(self) -> list[dict[str, Any]]:
        out = []
        for key, want in sorted(self.wants.items()):
            have = self.haves.get(key)
            observed = container_state(want, have, self.history.get(key), self.pending.get(key))
            out.append(
                ContainerReport(
                    workspace=key[0],
                    name=key[1],
                    uid=want.uid,
                    state=observed.state,
                    container_id=observed.container_id,
                    exit_code=observed.exit_code,
                    reason=observed.reason,
                    started_at=observed.started_at,
                    finished_at=observed.finished_at,
                    restarts=observed.restarts,
                ).model_dump(mode="json")
            )
        return out

    async def build_report(self) -> dict[str, Any]:
        facts = await self.probe.inventory()
        containers = self.container_reports()
        report = NodeReport(
            **facts,
            endpoint_fingerprint=self.endpoint_fingerprint,
            containers=[ContainerReport(**c) for c in containers],
            complete=self.have_assignments,
        )
        return report.model_dump(mode="json")

    async def send_report(self) -> None:
        body = await self.build_report()
        reply = await self.api.report(body)
        self._last_sent = body["containers"] if self.have_assignments else None
        self.reports_sent += 1
        self.ticket_key = str(reply.get("ticket_key") or self.ticket_key)
        status = str(reply.get("status") or "")
        if status != self.node_status:
            log.info("event=node_status node=%s status=%s", self.settings.node_name, status)
            self.node_status = status
        cursor = reply.get("assignments_cursor")
        if self.have_assignments and cursor and cursor != self.cursor:
            # The long-poll missed a change (or is about to see it): ask again now.
            self._refetch.set()

    async def report_loop(self) -> None:
        backoff = Backoff(cap_s=self.settings.api_backoff_max_s)
        delay = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._report_now.wait()
                # debounce: let a burst of changes land in one report
                await asyncio.sleep(REPORT_DEBOUNCE_S)
            self._report_now.clear()
            try:
                await self.send_report()
            except ApiError as exc:
                self._log_once("report", logging.WARNING, f"event=report_failed {exc}")
                delay = min(backoff.next_delay(), self.settings.report_interval_s)
                continue
            except Exception:
                log.exception("event=report_crashed")
                delay = self.settings.report_interval_s
                continue
            backoff.reset()
            self._clear_log("report", "event=report_recovered")
            delay = self.settings.report_interval_s

    # ------------------------------------------------------------------ events
    async def events_loop(self) -> None:
        backoff = Backoff(cap_s=self.settings.api_backoff_max_s)
        while True:
            try:
                async for event in self.driver.events():
                    backoff.reset()
                    cid = event.get("id") or (event.get("Actor") or {}).get("ID")
                    if isinstance(cid, str):
                        self.driver.forget(cid)
                    self.wake()
            except (aiodocker.DockerError, OSError, ValueError) as exc:
                self._log_once("events", logging.WARNING, f"event=docker_events_lost error={exc}")
            except Exception as exc:  # aiohttp payload errors when the engine restarts
                self._log_once("events", logging.WARNING, f"event=docker_events_lost error={exc!r}")
            self.wake()  # we may have missed events: look again
            await asyncio.sleep(backoff.next_delay())

    # ------------------------------------------------------------------ run
    async def run(self, *extra: Callable[[Agent], Coroutine[Any, Any, None]]) -> None:
        """Run every loop until cancelled (``extra``: more services, e.g. the :3001
        server, run in the same task group)."""
        log.info(
            "event=agent_start node=%s zone=%s agent=%s api=%s gpu_mode=%s",
            self.settings.node_name,
            self.zone,
            self.api.agent_id,
            self.settings.api_endpoint,
            self.settings.gpu_mode,
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.assignments_loop(), name="dora-node-assignments")
                group.create_task(self.reconcile_loop(), name="dora-node-reconcile")
                group.create_task(self.report_loop(), name="dora-node-report")
                group.create_task(self.events_loop(), name="dora-node-events")
                for service in extra:
                    group.create_task(service(self))
        finally:
            for task in list(self.tasks.values()):
                task.cancel()


async def _retry(what: str, call: Callable[[], Coroutine[Any, Any, Any]], cap_s: float) -> Any:
    backoff = Backoff(cap_s=cap_s)
    last = ""
    while True:
        try:
            return await call()
        except (ApiError, aiodocker.DockerError, OSError) as exc:
            message = str(exc)
            if message != last:
                log.warning("event=%s_failed error=%s (retrying)", what, message)
                last = message
            await asyncio.sleep(backoff.next_delay())


async def serve(
    settings: NodeSettings,
    *extra: Callable[[Agent], Coroutine[Any, Any, None]],
) -> None:
    """Connect to Docker and the API, then run the agent and its exec/logs server
    until cancelled. Raises `dora.node.server.TlsError` for an unusable certificate."""
    from dora.node.server import NodeServer

    exec_server = NodeServer.from_settings(settings)
    driver = DockerDriver.connect(
        settings.docker_host,
        node=settings.node_name,
        zone=settings.zone or "",
        extra_labels=settings.extra_labels,
        port_bind_ip=settings.port_bind_ip,
        stop_grace_s=settings.stop_grace_s,
        pull_timeout_s=settings.pull_timeout_s,
        nfs_options=settings.nfs_options,
        init=settings.container_init,
        gpu_mode=settings.gpu_mode,
    )
    api: ApiClient | None = None
    try:
        info = await _retry("docker_info", driver.info, settings.api_backoff_max_s)
        warning = gpu_mode_warning(settings.gpu_mode, info)
        if warning:
            log.warning("event=gpu_mode_mismatch %s", warning)
        identity = agent_id(settings.node_name, str(info.get("ID") or ""))
        api = ApiClient(
            settings.api_endpoint,
            settings.api_token,
            node=settings.node_name,
            agent_id=identity,
            zone=settings.zone,
            verify=ssl_verify(insecure=settings.insecure_api, ca_file=settings.api_ca),
        )
        zone = settings.zone
        if zone is None:
            version = await _retry("api_version", api.version, settings.api_backoff_max_s)
            zone = str(version.get("zone") or "")
            if not zone:
                raise ApiError("the API did not say which zone it serves; set ZONE")
            api.zone = zone
        driver.zone = zone

        async def docker_facts() -> tuple[dict[str, Any], dict[str, Any]]:
            return await driver.version(), await driver.info()

        agent = Agent(settings, zone=zone, driver=driver, api=api, probe=Probe(docker_facts))
        agent.endpoint_fingerprint = exec_server.identity.fingerprint
        await agent.run(exec_server.run, *extra)
    finally:
        if api is not None:
            await api.close()
        await driver.close()
