"""Why is this pending: counted filter results → a sentence and a dict.

Placement rejects every node for exactly one `Reason` (the first filter that says
no), so for one replica the counts add up to the number of nodes:

    0/3 nodes fit: 2 no free "Tesla V100-SXM2-16GB" (need 8, max free 4), 1 NOT_READY

Ordering is stable: larger counts first, ties in filter order (`Reason` declaration
order). Capacity reasons carry figures: what one replica needs and the most any
rejected node has free, so a user sees at once whether waiting can ever help.

A gang that fits only partly says how far it got and explains the replica that did
not fit, on the cluster as it was with the earlier replicas tentatively bound:

    only 2/4 replicas fit, then 0/3 nodes fit: 3 no free GPU (need 4, max free 2)

`Explanation.as_dict` is the structured form for ``dora why`` and ``-o json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dora.scheduler.types import Booking, Reason, Request

_REASON_ORDER = {reason: position for position, reason in enumerate(Reason)}
_GIB = 1024**3
_MIB = 1024**2


@dataclass(frozen=True, slots=True)
class Rejection:
    """One node's verdict: its reason and, for capacity reasons, need vs free."""

    reason: Reason
    need: int | None = None
    free: int | None = None


@dataclass(frozen=True, slots=True)
class ReasonCount:
    """How many nodes were rejected for one reason, with the figures that matter."""

    reason: Reason
    count: int
    label: str
    need: int | None = None
    max_free: int | None = None
    unit: str = ""
    """``""`` plain count, ``"m"`` millicores, ``"bytes"`` memory."""

    def text(self) -> str:
        """``2 no free "X" (need 8, max free 4)`` or ``1 NOT_READY``."""
        head = f"{self.count} {self.label}"
        if self.need is None or self.max_free is None:
            return head
        need, free = _fmt(self.need, self.unit), _fmt(self.max_free, self.unit)
        return f"{head} (need {need}, max free {free})"

    def as_dict(self) -> dict[str, object]:
        """The structured form of this line."""
        return {
            "reason": self.reason.value,
            "count": self.count,
            "need": self.need,
            "max_free": self.max_free,
            "unit": self.unit,
            "text": self.text(),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a gang (or one replica of it) found no place, ready for humans and JSON."""

    nodes_total: int
    nodes_fit: int
    reasons: tuple[ReasonCount, ...]
    replicas_total: int = 1
    replicas_fit: int = 0
    notes: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """The one-line reason stored on the workload and shown by ``dora get wk``."""
        counts = ", ".join(rc.text() for rc in self.reasons)
        nodes = f"{self.nodes_fit}/{self.nodes_total} nodes fit"
        body = f"{nodes}: {counts}" if counts else nodes
        if 0 < self.replicas_fit < self.replicas_total:
            body = f"only {self.replicas_fit}/{self.replicas_total} replicas fit, then {body}"
        if self.notes:
            body = f"{body}; {'; '.join(self.notes)}"
        return body

    def count_of(self, reason: Reason) -> int:
        """How many nodes were rejected for ``reason`` (0 when none)."""
        return sum(rc.count for rc in self.reasons if rc.reason is reason)

    def as_dict(self) -> dict[str, object]:
        """The structured form for ``dora why`` and JSON output."""
        return {
            "message": self.message,
            "nodes_total": self.nodes_total,
            "nodes_fit": self.nodes_fit,
            "replicas_total": self.replicas_total,
            "replicas_fit": self.replicas_fit,
            "reasons": [rc.as_dict() for rc in self.reasons],
            "notes": list(self.notes),
        }

    def with_note(self, note: str) -> Explanation:
        """A copy with one more note appended (e.g. the head's reservation)."""
        return Explanation(
            nodes_total=self.nodes_total,
            nodes_fit=self.nodes_fit,
            reasons=self.reasons,
            replicas_total=self.replicas_total,
            replicas_fit=self.replicas_fit,
            notes=(*self.notes, note),
        )


def count_rejections(
    nodes_total: int,
    rejections: Iterable[Rejection],
    request: Request,
    *,
    replicas_total: int = 1,
    replicas_fit: int = 0,
    notes: tuple[str, ...] = (),
) -> Explanation:
    """Fold per-node rejections into counted, ordered reasons.

    Nodes with no rejection are the ones that fit: ``nodes_fit`` is what is left of
    ``nodes_total``. For capacity reasons the figures come from the rejected node with
    the most free (its own need is shown, since memory shares differ by node).
    """
    counts: dict[Reason, int] = {}
    best: dict[Reason, Rejection] = {}
    for rejection in rejections:
        counts[rejection.reason] = counts.get(rejection.reason, 0) + 1
        if rejection.free is None:
            continue
        current = best.get(rejection.reason)
        if current is None or current.free is None or rejection.free > current.free:
            best[rejection.reason] = rejection
    rejected = sum(counts.values())
    ordered = sorted(counts, key=lambda r: (-counts[r], _REASON_ORDER[r]))
    lines = []
    for reason in ordered:
        figure = best.get(reason)
        label, unit = _label(reason, request)
        lines.append(
            ReasonCount(
                reason=reason,
                count=counts[reason],
                label=label,
                need=None if figure is None else figure.need,
                max_free=None if figure is None else figure.free,
                unit=unit,
            )
        )
    return Explanation(
        nodes_total=nodes_total,
        nodes_fit=max(0, nodes_total - rejected),
        reasons=tuple(lines),
        replicas_total=replicas_total,
        replicas_fit=replicas_fit,
        notes=notes,
    )


def describe_booking(booking: Booking) -> str:
    """Event text for a binding: ``node2 GPUs [0, 1] CPUs [0-15] memory 64.0 GiB``."""
    parts = [booking.node]
    if booking.gpu_indices:
        parts.append(f"GPUs {list(booking.gpu_indices)}")
    if booking.cpu_ids:
        parts.append(f"CPUs [{_ranges(booking.cpu_ids)}]")
    if booking.millicores:
        parts.append(f"CPU {booking.millicores}m")
    if booking.memory_bytes:
        parts.append(f"memory {_fmt(booking.memory_bytes, 'bytes')}")
    return " ".join(parts)


def _label(reason: Reason, request: Request) -> tuple[str, str]:
    """The words (and unit) used for a reason, given what the request asked for."""
    if reason is Reason.GPU_CAPACITY:
        models = request.gpu_models
        if not models:
            return "no free GPU", ""
        return "no free " + " or ".join(f'"{m}"' for m in models), ""
    if reason is Reason.CPU_CAPACITY:
        if request.millicores and request.whole_cpus is None:
            return "not enough CPU", "m"
        return "no free CPUs", ""
    if reason is Reason.MEMORY:
        return "not enough memory", "bytes"
    if reason is Reason.GPU_MODEL and request.gpu_models:
        return "without " + " or ".join(f'"{m}"' for m in request.gpu_models), ""
    if reason is Reason.CPU_MODEL and request.cpu_models:
        return "without CPU " + " or ".join(f'"{m}"' for m in request.cpu_models), ""
    if reason is Reason.NOT_ALLOWED:
        return "not allowing " + ("GPUWorkload" if request.is_gpu else "CPUWorkload"), ""
    if reason is Reason.NODE_SELECTOR and request.node_name:
        return f'not node "{request.node_name}"', ""
    return reason.value, ""


def _fmt(value: int, unit: str) -> str:
    if unit == "m":
        return f"{value}m"
    if unit == "bytes":
        if abs(value) >= _GIB:
            return f"{value / _GIB:.1f} GiB"
        return f"{value / _MIB:.0f} MiB"
    return str(value)


def _ranges(ids: tuple[int, ...]) -> str:
    """``0,1,2,3,8`` → ``0-3,8``: pinned CPU sets are long and contiguous."""
    out: list[str] = []
    ordered = sorted(ids)
    start = prev = ordered[0]
    for value in ordered[1:]:
        if value == prev + 1:
            prev = value
            continue
        out.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = value
    out.append(f"{start}-{prev}" if prev > start else str(start))
    return ",".join(out)
