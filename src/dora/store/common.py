"""What every backend shares: argument checks done before any write (so a malformed
call never half-writes a batch) and the row ↔ `Record` encoding of the four parts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from dora.store.base import FIELDS, Key, NewRecord, Record, Write

DESIRED = frozenset(("run", "drain", "pause"))
JSON_FIELDS = frozenset(("spec", "meta", "computed", "observed"))

# Compact JSON; non-ASCII kept as is (smaller, and both databases store UTF-8).
_stdlib_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# orjson refuses (TypeError) what the stdlib encoder handles differently: non-string
# keys, integers beyond 64 bits, nesting deeper than 254, lone surrogates; and, with
# these options, dataclasses and datetimes, which the stdlib rejects too.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def dumps(value: Any) -> str:
    """``value`` as compact JSON text: orjson's encoding (several times faster; the
    store writer spends much of its time here), else the stdlib's, which then decides
    (and raises TypeError/ValueError as before). Both give the same JSON values; two
    differences in the text: floats may be spelt differently (``1e-7`` for
    ``1e-07``, the same number), and NaN and infinities, which JSON cannot represent,
    are written as ``null`` (the stdlib would write the invalid ``NaN``)."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return _stdlib_dumps(value)


Plan = tuple[NewRecord | None, Key, dict[str, Any], int | None, bool]
"""A checked batch element: (new, key, patch fields, expected version, delete)."""


def check_key(key: Key) -> None:
    # Fast path (every write and event of a batch passes here): an exact Key of
    # plain, non-empty strings; anything else gets the checks that name the problem.
    if (
        type(key) is Key
        and type(key.kind) is str
        and type(key.zone) is str
        and type(key.workspace) is str
        and type(key.name) is str
        and key.kind
        and key.name
    ):
        return
    if not isinstance(key, Key):
        raise TypeError(f"expected a Key, got {type(key).__name__}")
    if not (
        isinstance(key.kind, str)
        and isinstance(key.zone, str)
        and isinstance(key.workspace, str)
        and isinstance(key.name, str)
    ):
        raise TypeError(f"{key!r}: key parts must be strings")
    if not key.kind or not key.name:
        raise ValueError(f"{key!r}: kind and name must not be empty")


def check_fields(fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        if name in ("spec", "meta"):
            ok = isinstance(value, dict)
        elif name in ("computed", "observed"):
            ok = value is None or isinstance(value, dict)
        elif name == "desired":
            ok = value in DESIRED
        else:  # node, parent
            ok = isinstance(value, str)
        if not ok:
            raise ValueError(f"invalid {name}: {value!r}")


def new_fields(new: NewRecord) -> dict[str, Any]:
    return {name: getattr(new, name) for name in FIELDS}


def check_new(new: NewRecord) -> None:
    check_key(new.key)
    # `check_fields(new_fields(new))`, unrolled (every create of a batch passes here).
    if not (
        isinstance(new.spec, dict)
        and isinstance(new.meta, dict)
        and (new.computed is None or isinstance(new.computed, dict))
        and (new.observed is None or isinstance(new.observed, dict))
        and new.desired in DESIRED
        and isinstance(new.node, str)
        and isinstance(new.parent, str)
    ):
        check_fields(new_fields(new))  # names the offending field
    if not isinstance(new.owner, str):
        raise ValueError(f"invalid owner: {new.owner!r}")


def plan_write(write: Write) -> Plan:
    """Check one batch element; raises ValueError/TypeError on a malformed one."""
    if write.base is not None:
        if write.new is not None or write.delete:
            raise ValueError(f"{write.key}: only an update carries a base record")
        if not isinstance(write.base, Record) or write.base.key != write.key:
            raise ValueError(f"{write.key}: base must be the record of the same key")
    if write.new is not None:
        if write.patch is not None or write.expected_version is not None or write.delete:
            raise ValueError(f"{write.key}: a create carries no patch, version or delete")
        if write.new.key != write.key:
            raise ValueError(f"{write.key}: new.key is {write.new.key}")
        check_new(write.new)
        return write.new, write.key, {}, 0, False
    check_key(write.key)
    if write.delete:
        if write.patch is not None:
            raise ValueError(f"{write.key}: a delete carries no patch")
        return None, write.key, {}, write.expected_version, True
    if write.patch is None or write.expected_version is None:
        raise ValueError(f"{write.key}: an update needs patch and expected_version")
    items = write.patch.items()
    check_fields(items)
    return None, write.key, items, write.expected_version, False


def check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"lease ttl must be positive, got {ttl!r}")


ONCE_PREFIX = "once/"
"""Lease names of `Store.claim_once` claims start with this; no lease is named so."""
ONCE_END = "once0"
"""The first name past every ``once/…`` name ('0' follows '/')."""


def once_name(name: str) -> str:
    if not name:
        raise ValueError("a one-shot claim needs a name")
    return ONCE_PREFIX + name


def pk(key: Key) -> tuple[str, str, str, str]:
    return (key.kind, key.zone, key.workspace, key.name)


def load_opt(blob: str | None) -> dict[str, Any] | None:
    return None if blob is None else json.loads(blob)


def encode(name: str, value: Any) -> Any:
    """Column value of a record field: the four parts as JSON text."""
    if name in JSON_FIELDS:
        return None if value is None else dumps(value)
    return value


def with_changes(record: Record, changes: Mapping[str, Any]) -> Record:
    """``dataclasses.replace(record, **changes)`` for field names in ``changes``,
    without replace's per-field machinery (a quarter of the cost: every update of a
    batch returns one). `Record` is a plain frozen dataclass (no ``__post_init__``,
    no ``init=False`` field), so copying its attributes is the same thing."""
    new = object.__new__(Record)
    state = new.__dict__
    state.update(record.__dict__)
    state.update(changes)
    return new


def record_from_row(row: Sequence[Any]) -> Record:
    """A `Record` from the first 17 columns, in the backends' shared column order."""
    return Record(
        key=Key(row[0], row[1], row[2], row[3]),
        uid=row[4],
        version=row[5],
        spec=json.loads(row[6]),
        meta=json.loads(row[7]),
        desired=row[8],
        computed=load_opt(row[9]),
        observed=load_opt(row[10]),
        spec_hash=row[11],
        owner=row[12],
        node=row[13],
        parent=row[14],
        created_at=row[15],
        updated_at=row[16],
    )
