"""Resource names: which text may name which kind.

Most kinds use DNS-like names with dots allowed (workspaces such as
``amedeo.setti``). A Resourcecredit is named after a GPU product (``Tesla
V100-SXM2-16GB``, spaces allowed). A Container is ``<workload>.<n>``, n counting
from 1 as the docs and the Docker names (``dora.<workspace>.<container>``) assume.
"""

from __future__ import annotations

import re

from dora.model.scalars import ALL, NAME_MAX, describe, name_problem

RESERVED_NAMES: dict[str, str] = {
    "Zone": "every zone",
    "Workspace": "every workspace",
    "Node": "any node",
}
"""Kinds whose resources may not be called ``All``: the word is their wildcard."""

_CONTAINER_NAME = re.compile(r"(?P<workload>.+)\.(?P<index>[1-9][0-9]*)")
_PRODUCT_NAME_BAD = re.compile(r"[\x00-\x1f\x7f/]")


def container_name(workload: str, index: int) -> str:
    """Name of replica ``index`` (from 1) of ``workload``: ``blue.red`` + 1 → ``blue.red.1``."""
    if index < 1:
        raise ValueError(f"container indexes start at 1 (got {index})")
    return f"{workload}.{index}"


def split_container_name(name: str) -> tuple[str, int]:
    """``blue.red.1`` → (``blue.red``, 1). Raises ``ValueError`` for other names."""
    match = _CONTAINER_NAME.fullmatch(name)
    if not match or name_problem(match["workload"]):
        raise ValueError(f"not a container name (<workload>.<n>, n from 1): {name!r}")
    return match["workload"], int(match["index"])


def resource_name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` cannot name a ``kind`` resource, or ``None``.

    Resourcecredit names are GPU product names (spaces allowed); Container names
    are ``<workload>.<n>``; every other kind uses DNS-like names with dots allowed.
    """
    if kind == "Resourcecredit":
        if len(name) > NAME_MAX:
            return f"must be at most {NAME_MAX} characters (got {len(name)})"
        if name != name.strip() or _PRODUCT_NAME_BAD.search(name):
            return (
                "must be a GPU product name: no leading or trailing spaces, "
                f"no '/' or control characters (got {describe(name)})"
            )
        return None
    if kind == "Container":
        try:
            split_container_name(name)
        except ValueError:
            return f"must be <workload>.<n> with n from 1, like train.1 (got {describe(name)})"
    problem = name_problem(name)
    if problem is None and name == ALL and kind in RESERVED_NAMES:
        return f"{ALL} is reserved: it means {RESERVED_NAMES[kind]}"
    return problem
