"""The registry of resource kinds: scope (global, zoned, workspaced), aliases, plurals.

The scope decides where a resource lives and which metadata keys it may carry:
a zoned kind may name a ``zone``, a workspaced kind may name a ``workspace``
(``group`` in the original YAML). CPU and GPU are read-only views computed from
node reports; they can be listed but never applied.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from dora.model.errors import UnknownKindError


@dataclass(frozen=True)
class KindInfo:
    """Static facts about one kind."""

    name: str
    zoned: bool
    workspaced: bool
    readonly: bool
    aliases: tuple[str, ...]
    plural: str

    @property
    def scope(self) -> str:
        """``global``, ``zoned`` or ``zoned+workspaced``: how the store partitions it."""
        if self.workspaced:
            return "zoned+workspaced"
        return "zoned" if self.zoned else "global"


def _kind(
    name: str,
    *,
    zoned: bool = False,
    workspaced: bool = False,
    readonly: bool = False,
    aliases: tuple[str, ...] = (),
) -> KindInfo:
    plural = name.lower() + "s"
    return KindInfo(name, zoned, workspaced, readonly, aliases, plural)


KINDS: dict[str, KindInfo] = {
    k.name: k
    for k in (
        _kind("Zone", aliases=("z", "zone", "zones")),
        _kind("Workspace", aliases=("ws", "workspace", "workspaces")),
        _kind("User", aliases=("user", "users")),
        _kind("Role", aliases=("role", "roles")),
        _kind("Storage", zoned=True, aliases=("storage", "storages")),
        _kind("Node", zoned=True, aliases=("node", "nodes")),
        _kind("Resourcecredit", zoned=True, aliases=("rc", "resourcecredit", "resourcecredits")),
        _kind("Usercredit", zoned=True, aliases=("uc", "usercredit", "usercredits")),
        _kind("Volume", zoned=True, workspaced=True, aliases=("vol", "vols", "volume", "volumes")),
        _kind("Workload", zoned=True, workspaced=True, aliases=("wk", "workload", "workloads")),
        _kind("Container", zoned=True, workspaced=True, aliases=("c", "container", "containers")),
        _kind("CPU", zoned=True, readonly=True, aliases=("cpu", "cpus")),
        _kind("GPU", zoned=True, readonly=True, aliases=("gpu", "gpus")),
    )
}
"""Every kind, in the order the docs introduce them."""

PSEUDO_KINDS: tuple[str, ...] = ("Token", "Project", "Event", "Version", "All")
"""Names that are not stored kinds but may key a Role's permissions (and ``All`` a
User's resource entry): tokens, projects, workload events and versions, everything."""

_LOOKUP: dict[str, KindInfo] = {}
for _info in KINDS.values():
    for _text in (_info.name, _info.plural, *_info.aliases):
        _LOOKUP[_text.lower()] = _info


def resolve_kind(text: str) -> KindInfo:
    """Find a kind by name, plural or CLI alias, ignoring case (``wk`` → Workload).

    Raises :class:`UnknownKindError` listing the valid kinds and their aliases.
    """
    info = _LOOKUP.get(text.strip().lower())
    if info is None:
        raise UnknownKindError(unknown_kind_message(text, with_aliases=True))
    return info


def unknown_kind_message(text: str, *, with_aliases: bool = False) -> str:
    """Explain that ``text`` is no kind, with a close match when there is one."""
    names = ", ".join(KINDS)
    msg = f"unknown kind {text!r}"
    hint = kind_hint(text)
    if hint:
        msg += f"; did you mean {hint!r}?"
    msg += f"; valid kinds: {names}"
    if with_aliases:
        aliases = ", ".join(a for k in KINDS.values() for a in k.aliases if len(a) <= 3)
        msg += f" (short aliases: {aliases}; plurals work too)"
    return msg


def kind_hint(text: str, extra: tuple[str, ...] = ()) -> str | None:
    """Closest canonical kind name for a misspelt or wrongly-cased one, or ``None``."""
    candidates = [*KINDS, *extra]
    lowered = {c.lower(): c for c in candidates}
    if text.lower() in lowered:
        return lowered[text.lower()]
    info = _LOOKUP.get(text.lower())
    if info is not None:
        return info.name
    close = difflib.get_close_matches(text, candidates, n=1, cutoff=0.75)
    return close[0] if close else None
