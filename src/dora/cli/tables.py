"""`dora get` tables: the original's columns per kind, as plain aligned text.

The format is the admin guide's: a header line, a dashed rule as wide as the table,
then one line per resource, columns padded with two spaces. Plain text (no colours,
no box drawing) keeps it greppable and fast for hundreds of rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]
Cell = Callable[[Row, float], str]

READY_WINDOW_S = 20


def age(ts: float | None, now: float) -> str:
    if not isinstance(ts, int | float):
        return "-"
    seconds = max(0, int(now - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def last_seen(ts: Any, now: float) -> str:
    """`now` within the readiness window, then `Ns ago`, `Nm ago`, `Nh ago`, `Nd ago`."""
    if not isinstance(ts, int | float):
        return "-"
    seconds = max(0, int(now - ts))
    if seconds <= READY_WINDOW_S:
        return "now"
    if seconds <= 120:
        return f"{seconds}s ago"
    if seconds <= 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def _obs(row: Row) -> dict[str, Any]:
    return row.get("observed") or {}


def _comp(row: Row) -> dict[str, Any]:
    return row.get("computed") or {}


def _spec(row: Row, *path: str) -> Any:
    value: Any = row.get("spec") or {}
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def _node_cpu(row: Row, _: float) -> str:
    obs = _obs(row)
    return f"{obs['cpu_count']}x{obs.get('cpu_model', '')}" if obs.get("cpu_count") else "-"


def _node_gpu(row: Row, _: float) -> str:
    models = Counter(str(g.get("product_name", "?")) for g in _obs(row).get("gpus") or [])
    return ",".join(f"{n}x{model}" for model, n in models.items()) or "-"


def _gpu_count(row: Row, _: float) -> str:
    count = _spec(row, "selectors", "gpu", "count")
    return str(count) if count else "0"


def _replicas(row: Row, _: float) -> str:
    wanted = _spec(row, "replica", "count")
    return f"{_comp(row).get('running', 0)}/{wanted if wanted is not None else 1}"


def _workload_state(row: Row, _: float) -> str:
    state = str(row.get("status") or "-")
    reason = _comp(row).get("reason")
    return f"{state}: {reason}" if reason and state in ("Pending", "Failed") else state


def _container_reason(row: Row, _: float) -> str:
    return _text(_obs(row).get("reason") or _comp(row).get("reason"))


def _pair(row: Row, a: str, b: str, unit: str) -> str:
    spec = row.get("spec") or {}
    if spec.get(a) is None:
        return "-"
    first = f"{spec[a]:g}" if isinstance(spec[a], float) else str(spec[a])
    second = spec.get(b)
    second_text = f"{second:g}" if isinstance(second, float) else _text(second)
    return f"{first}/{second_text}{unit}"


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def col(header: str, cell: Cell) -> tuple[str, Cell]:
    return header, cell


def field(*path: str) -> Cell:
    return lambda row, _: _text(_spec(row, *path))


KIND: tuple[str, Cell] = col("kind", lambda r, _: str(r["kind"]).lower())
ZONE = col("zone", lambda r, _: _text(r.get("zone")))
WORKSPACE = col("workspace", lambda r, _: _text(r.get("workspace")))
NAME = col("name", lambda r, _: str(r["name"]))
DESIRED = col("desired", lambda r, _: str(r.get("desired", "-")))
AGE = col("age", lambda r, now: age(r.get("created_at"), now))

COLUMNS: dict[str, list[tuple[str, Cell]]] = {
    "Node": [
        KIND,
        ZONE,
        NAME,
        col("endpoint", field("endpoint")),
        col("cpu", _node_cpu),
        col("gpu", _node_gpu),
        col("lastSeen", lambda r, now: last_seen(_obs(r).get("last_seen"), now)),
        DESIRED,
        col("status", lambda r, _: _text(r.get("status"))),
        col("version", lambda r, _: _text(_obs(r).get("version"))),
    ],
    "Workload": [
        KIND,
        ZONE,
        WORKSPACE,
        NAME,
        DESIRED,
        col("image", field("image", "image")),
        col("gpu", _gpu_count),
        col("replica", _replicas),
        AGE,
        col("state", _workload_state),
    ],
    "Container": [
        KIND,
        ZONE,
        WORKSPACE,
        NAME,
        DESIRED,
        col("image", field("image", "image")),
        col("node", lambda r, _: _text(r.get("node"))),
        col("status", lambda r, _: _text(r.get("status"))),
        AGE,
        col("reason", _container_reason),
    ],
    "GPU": [
        KIND,
        ZONE,
        col("node", field("node")),
        col("product_name", field("product_name")),
        col("index", field("index")),
        col("temp", lambda r, _: _pair(r, "temperature_c", "temperature_max_c", "C")),
        col("power", lambda r, _: _pair(r, "power_draw_w", "power_limit_w", "W")),
        col("memory", lambda r, _: _pair(r, "memory_used_mb", "memory_total_mb", "MiB")),
        col("booked", lambda r, _: _yes(_spec(r, "booked"))),
        col("allowed", lambda r, _: _yes(_spec(r, "allowed"))),
    ],
    "CPU": [
        KIND,
        ZONE,
        col("node", field("node")),
        col("product_name", field("product_name")),
        col("index", field("index")),
        col("load", lambda r, _: _text(_spec(r, "load"))),
        col("booked", lambda r, _: _yes(_spec(r, "booked"))),
        col("allowed", lambda r, _: _yes(_spec(r, "allowed"))),
    ],
    "Volume": [
        KIND,
        ZONE,
        WORKSPACE,
        NAME,
        col("storage", field("storage")),
        col("policy", field("policy")),
        DESIRED,
    ],
    "Storage": [
        KIND,
        ZONE,
        NAME,
        col("endpoint", field("endpoint")),
        col("mountpath", field("mountpath")),
        col("type", field("kind")),
        DESIRED,
    ],
    "Resourcecredit": [
        KIND,
        ZONE,
        NAME,
        col("product_name", field("product_name")),
        col("credits/hour", field("credit", "per", "hour")),
    ],
    "Usercredit": [
        KIND,
        ZONE,
        NAME,
        col("credits/week", lambda r, _: _text(_comp(r).get("weekly"))),
        col("credits/total", lambda r, _: _text(_comp(r).get("total"))),
    ],
    "User": [
        KIND,
        NAME,
        col("workspace", field("default", "workspace")),
        col("zone", field("default", "zone")),
        col("roles", lambda r, _: _text(sorted({g["role"] for g in _spec(r, "resources") or []}))),
        DESIRED,
    ],
    "Role": [
        KIND,
        NAME,
        col("kinds", lambda r, _: _text(sorted((_spec(r, "permission") or {}).keys()))),
        DESIRED,
    ],
    "Zone": [KIND, NAME, DESIRED, AGE],
    "Workspace": [KIND, NAME, DESIRED, AGE],
}

WIDE_EXTRA: list[tuple[str, Cell]] = [  # "revision": nodes already have a version column
    col("owner", lambda r, _: _text(r.get("owner"))),
    col("revision", lambda r, _: str(r.get("version", "-"))),
    col("uid", lambda r, _: str(r.get("uid", "-"))[:8]),
]


def render(kind: str, rows: Sequence[Row], now: float, *, wide: bool = False) -> str:
    columns = COLUMNS.get(kind, [KIND, NAME, DESIRED, AGE])
    if wide:
        columns = [*columns, *WIDE_EXTRA]
    headers = [h for h, _ in columns]
    return align(headers, [[cell(row, now) for _, cell in columns] for row in rows])


def align(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """Header, dashed rule, rows: columns as wide as their widest cell, two spaces apart."""
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for row_cells in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(row_cells, widths, strict=True))
        lines.append(line.rstrip())
    return "\n".join(lines)
