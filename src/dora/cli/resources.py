"""`dora apply`, `delete`, `get`, `describe`, `why`, `pause`, `resume`."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from dora.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    AllOpt,
    CaCertOpt,
    DebugOpt,
    InsecureOpt,
    OutputOpt,
    ProfileOpt,
    WorkspaceOpt,
    ZoneOpt,
    client_for,
    fail,
    handle_errors,
)

FilesOpt = Annotated[
    list[str],
    typer.Option("-f", "--file", help="YAML file, folder (every *.yaml/*.yml) or - for stdin"),
]


KIND_NAMES: dict[str, str] = {
    text: kind
    for kind, aliases in {
        "Zone": ("z",),
        "Workspace": ("ws",),
        "User": (),
        "Role": (),
        "Storage": (),
        "Node": (),
        "Resourcecredit": ("rc",),
        "Usercredit": ("uc",),
        "Volume": ("vol", "vols"),
        "Workload": ("wk",),
        "Container": ("c",),
        "CPU": (),
        "GPU": (),
    }.items()
    for text in (kind.lower(), kind.lower() + "s", *aliases)
}
"""Lower-cased kind names, plurals and aliases (as `dora.model.resolve_kind` reads
them; a unit test keeps the two equal): `dora get` resolves a kind without importing
the document model, which every `get` would otherwise pay for at start-up."""


def _kind(text: str) -> str:
    known = KIND_NAMES.get(text.strip().lower())
    if known:
        return known
    from dora.model import UnknownKindError, resolve_kind

    try:
        return resolve_kind(text).name
    except UnknownKindError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


APPLY_ORDER = (
    "Zone",
    "Workspace",
    "Role",
    "User",
    "Storage",
    "Node",
    "Resourcecredit",
    "Usercredit",
    "Volume",
    "Workload",
    "Container",
)
"""What must exist before what: a workload needs its workspace and volumes, a volume
its storage, a user its roles. `apply` goes down this list, `delete -f` up it."""


def _rank(result: Any) -> int:
    if not result.ok:
        return -1
    kind = result.resource.kind
    return APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)


def _load(files: list[str]) -> Any:
    """Read and check every document locally first (offline errors, with line numbers)."""
    from dora.model import check_paths

    report = check_paths(files)
    if report.unreadable:
        raise fail("; ".join(str(e) for e in report.unreadable), EXIT_USAGE)
    return report


def _fatal(exc: Exception) -> bool:
    """Errors that would repeat for every document: stop at the first one."""
    from dora.client import ConnectionFailed, RateLimited, Unauthorized

    return isinstance(exc, ConnectionFailed | Unauthorized | RateLimited)


def apply_cmd(
    files: FilesOpt,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Create or update resources from YAML; one line per document.

    Every valid document is applied even if others are invalid; the command exits 1
    when any document failed. Documents go in dependency order (zones, workspaces,
    roles, users, storage, nodes, credits, volumes, workloads), so a folder of files
    applies in one go whatever the file names.

    Examples:

      dora apply -f job.yaml

      dora apply -f manifests/ -g my-team

      cat job.yaml | dora apply -f -
    """
    from dora.client import DoraError

    report = _load(files)
    failed = 0
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        for result in sorted(report.results, key=_rank):
            where = f"{result.source} doc {result.index}"
            assert result.resource is not None or not result.ok
            if not result.ok:
                failed += 1
                for issue in result.issues:
                    typer.echo(f"error  {issue}", err=True)
                continue
            resource = result.resource
            label = f"{resource.kind.lower()}/{resource.name}"
            try:
                out = dora.apply(resource.to_document(), zone=zone, workspace=workspace)
            except DoraError as exc:
                if debug or _fatal(exc):
                    raise
                failed += 1
                field = f"{exc.field}: " if exc.field and exc.field not in exc.message else ""
                typer.echo(f"error  {where}: {label}: {field}{exc.message}", err=True)
                continue
            typer.echo(f"{label} {out.status}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def delete_cmd(
    kind: Annotated[str | None, typer.Argument(help="kind or alias, e.g. wk")] = None,
    name: Annotated[str | None, typer.Argument(help="resource name")] = None,
    files: Annotated[
        list[str] | None, typer.Option("-f", "--file", help="delete what these files define")
    ] = None,
    cascade: Annotated[
        bool, typer.Option("--cascade", help="also delete what depends on it")
    ] = False,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Delete resources. Workloads drain first: their containers stop, then they go.

    Examples:

      dora delete wk my-job

      dora delete -f job.yaml

      dora delete ws old-team --cascade
    """
    from dora.client import Conflict, DoraError

    targets: list[tuple[str, str, str | None, str | None]] = []
    if files:
        for result in sorted(_load(files).results, key=_rank, reverse=True):
            if result.ok:
                r = result.resource
                targets.append((r.kind, r.name, r.zone or zone, r.workspace or workspace))
            else:
                for issue in result.issues:
                    typer.echo(f"error  {issue}", err=True)
    elif kind and name:
        targets.append((_kind(kind), name, zone, workspace))
    else:
        raise fail("name a KIND and NAME, or pass -f FILE", EXIT_USAGE)
    failed = 0
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        for k, n, z, w in targets:
            try:
                out = dora.delete(k, n, zone=z, workspace=w, cascade=cascade)
                typer.echo(f"{k.lower()}/{n} {out.status}")
            except DoraError as exc:
                if debug or _fatal(exc):
                    raise
                failed += 1
                hint = ""
                if isinstance(exc, Conflict) and not cascade and "cascade" in exc.message:
                    hint = f" (dora delete {k.lower()} {n} --cascade)"
                typer.echo(f"error  {k.lower()}/{n}: {exc.message}{hint}", err=True)
    if failed:
        raise typer.Exit(EXIT_FAILED)


OUTPUTS = ("wide", "json", "yaml")
READONLY_VIEWS = ("CPU", "GPU")


def _print(kind: str, rows: list[dict[str, Any]], output: str | None, one: bool) -> None:
    """A table, or the records as JSON/YAML (one record by itself when asked by name)."""
    data: Any = rows[0] if one and len(rows) == 1 else rows
    if output == "json":
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    elif output == "yaml":
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
        from dora.cli.tables import render

        typer.echo(render(kind, rows, time.time(), wide=output == "wide"))


def _fetch(dora: Any, kind: str, name: str | None, scope: dict[str, Any]) -> list[Any]:
    if not name:
        return list(dora.list(kind, **scope))
    workspace_scope = {k: v for k, v in scope.items() if k != "all_workspaces"}
    if kind not in READONLY_VIEWS:
        return [dora.get(kind, name, **workspace_scope)]
    # CPU and GPU are views over node reports with no record of their own: pick the
    # rows by name (``node2:0``) or by node (``node2``: every GPU of that node).
    from dora.client import NotFound

    rows = [r for r in dora.list(kind, **scope) if name in (r.name, r.node)]
    if not rows:
        zone = scope.get("zone") or "your zone"
        raise NotFound(f"no {kind} named {name!r} (nor a node with one) in {zone}", status=404)
    return rows


@handle_errors
def get_cmd(
    kind: Annotated[str, typer.Argument(help="kind or alias: wk, c, node, gpu, cpu, vol, …")],
    name: Annotated[
        str | None, typer.Argument(help="one resource (gpu/cpu: NODE:INDEX or a node)")
    ] = None,
    output: OutputOpt = None,
    watch: Annotated[bool, typer.Option("-w", "--watch", help="refresh every 2 s")] = False,
    all_workspaces: AllOpt = False,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List resources as a table (or one, by name).

    Examples:

      dora get nodes

      dora get wk -A

      dora get c my-job.1 -o yaml

      dora get gpu -z dora-cluster-1

      dora get gpu node2
    """
    canonical = _kind(kind)
    if output is not None and output not in OUTPUTS:
        raise fail(f"unknown output {output!r}: use wide, json or yaml", EXIT_USAGE)
    scope = {"zone": zone, "workspace": workspace, "all_workspaces": all_workspaces}
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        try:
            while True:
                rows = _fetch(dora, canonical, name, scope)
                dumped = [r.model_dump(mode="json") for r in rows]
                if watch:
                    typer.echo("\x1b[2J\x1b[H", nl=False)
                _print(
                    canonical, dumped, output, one=bool(name) and canonical not in READONLY_VIEWS
                )
                if not watch:
                    return
                time.sleep(2)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


@handle_errors
def describe_cmd(
    kind: Annotated[str, typer.Argument(help="kind or alias")],
    name: Annotated[str, typer.Argument(help="resource name")],
    output: OutputOpt = None,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show everything about one resource: spec, desired, computed, observed, events.

    Example:

      dora describe wk my-job
    """
    import yaml

    from dora.client import DoraError

    canonical = _kind(kind)
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        record = dora.get(canonical, name, zone=zone, workspace=workspace).model_dump(mode="json")
        try:
            events = dora.events(
                canonical,
                name,
                zone=record["zone"] or None,
                workspace=record["workspace"] or None,
                limit=20,
            )
        except DoraError:
            events = []  # the caller may describe without the Event verb
    record["events"] = [
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.at))}  {e.reason}  "
        f"{e.message}  ({e.actor})"
        for e in events
    ]
    if output == "json":
        typer.echo(json.dumps(record, indent=2, sort_keys=True))
    else:
        typer.echo(yaml.safe_dump(record, sort_keys=False).rstrip())


@handle_errors
def why_cmd(
    kind: Annotated[str, typer.Argument(help="wk (or c)")],
    name: Annotated[str, typer.Argument(help="workload or container name")],
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Say why a workload (or container) is not running yet.

    Example:

      dora why wk big-training
    """
    canonical = _kind(kind)
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        record = dora.get(canonical, name, zone=zone, workspace=workspace)
        computed = record.computed or {}
        observed = record.observed or {}
        reason = observed.get("reason") or computed.get("reason")
        if not reason and canonical == "Container" and record.parent and not record.node:
            # A container waiting for a place: the scheduler explains on its workload.
            parent = dora.get(
                "Workload", record.parent, zone=record.zone, workspace=record.workspace
            )
            reason = (parent.computed or {}).get("reason")
    status = record.status or "-"
    typer.echo(f"{canonical.lower()}/{name}: {status}")
    if reason:
        typer.echo(f"reason: {reason}")
    for line in computed.get("explain") or []:
        typer.echo(f"  {line}")
    if not reason and not computed.get("explain"):
        if status.lower() in ("pending", "scheduled") and not computed:
            typer.echo(
                "no reason recorded: the scheduler has not looked at it yet "
                f"(is `dora server scheduler` running for zone {record.zone}?)"
            )
        else:
            typer.echo("no reason recorded: it is not waiting on the scheduler")


def _pause(
    kind: str,
    name: str,
    paused: bool,
    workspace: str | None,
    zone: str | None,
    profile: str | None,
    insecure: bool,
    ca_cert: str | None,
) -> None:
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        if kind == "Container":
            if paused:
                dora.pause_container(name, zone=zone, workspace=workspace)
            else:
                dora.resume_container(name, zone=zone, workspace=workspace)
        elif paused:
            dora.pause(name, zone=zone, workspace=workspace)
        else:
            dora.resume(name, zone=zone, workspace=workspace)
    label = "container" if kind == "Container" else "workload"
    typer.echo(f"{label}/{name} {'paused' if paused else 'resumed'}")


def _pausable_kind(kind: str) -> str:
    resolved = _kind(kind)
    if resolved not in ("Workload", "Container"):
        raise fail(
            "only workloads (`wk`) and containers (`c`) can be paused and resumed", EXIT_USAGE
        )
    return resolved


@handle_errors
def pause_cmd(
    kind: Annotated[str, typer.Argument(help="wk (a workload) or c (one container)")],
    name: Annotated[str, typer.Argument(help="workload or container name")],
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Pause a workload, or freeze one container.

    `wk`: the workload's containers stop and free their GPUs and CPUs (others can use
    them); `resume` places them again, perhaps elsewhere.

    `c`: the container's processes are frozen in place (`docker pause`): memory and
    files stay as they are, and it keeps its GPUs and CPUs (they stay booked, and keep
    counting) until `resume` thaws it where it was.

    Examples:

      dora pause wk my-job

      dora pause c my-job.1
    """
    _pause(_pausable_kind(kind), name, True, workspace, zone, profile, insecure, ca_cert)


@handle_errors
def resume_cmd(
    kind: Annotated[str, typer.Argument(help="wk (a workload) or c (one container)")],
    name: Annotated[str, typer.Argument(help="workload or container name")],
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Resume a paused workload (its containers are placed again), or thaw a frozen
    container (its processes go on where they stopped).

    Examples:

      dora resume wk my-job

      dora resume c my-job.1
    """
    _pause(_pausable_kind(kind), name, False, workspace, zone, profile, insecure, ca_cert)


def register(app: typer.Typer) -> None:
    app.command("apply")(handle_errors(apply_cmd))
    app.command("delete")(handle_errors(delete_cmd))
    app.command("get")(get_cmd)
    app.command("describe")(describe_cmd)
    app.command("why")(why_cmd)
    app.command("pause")(pause_cmd)
    app.command("resume")(resume_cmd)
