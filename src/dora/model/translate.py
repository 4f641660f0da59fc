"""Turn pydantic validation errors into field paths and messages a user can act on.

Pydantic's own texts ("Input should be a valid dictionary or instance of Replica")
talk about Python; ours talk about the YAML (``must be a mapping (got a list)``,
``unknown field 'replicas'; did you mean 'replica'?``).
"""

from __future__ import annotations

import difflib
import json
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from dora.model.scalars import describe
from dora.model.specs.base import EmptySpec
from dora.model.specs.runtime import Config
from dora.model.specs.workload import ADMIN_ONLY_KEYS, ADMIN_ONLY_REASON, WorkloadSpec

Loc = tuple[str | int, ...]

_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(loc: Loc) -> str:
    """``("spec", "volumes", 0, "name")`` → ``spec.volumes[0].name``.

    Keys that are not plain words (GPU product names, annotation keys with dots)
    are written as ``["key"]`` so the path stays unambiguous.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def problems_from_error(exc: ValidationError, model: type[BaseModel]) -> list[tuple[Loc, str]]:
    """Every error of ``exc`` (raised validating ``model``) as (location, message)."""
    out: list[tuple[Loc, str]] = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
        kind = err["type"]
        ctx = err.get("ctx") or {}
        value = err.get("input")
        if kind == "dora":
            loc = (*loc, *ctx.get("path", ()))
            message = str(ctx["reason"])
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            message = _unknown_field(model, loc)
        elif kind in {"model_type", "dict_type", "model_attributes_type"}:
            message = f"must be a mapping (got {describe(value)})"
        elif kind in {"list_type", "tuple_type"}:
            message = f"must be a list (got {describe(value)})"
        elif kind == "string_type":
            message = f"must be a string (got {describe(value)})"
        else:  # pragma: no cover - every field type maps its errors above
            text = str(err["msg"])
            message = text[:1].lower() + text[1:]
        if (loc, message) not in out:
            out.append((loc, message))
    return out


def _unknown_field(model: type[BaseModel], loc: Loc) -> str:
    key = str(loc[-1]) if loc else ""
    parent = model_at(model, loc[:-1])
    if parent in (WorkloadSpec, Config) and key.lower() in ADMIN_ONLY_KEYS:
        return f"{key!r} is not allowed: {ADMIN_ONLY_REASON}"
    if parent is None:  # pragma: no cover - extra keys only come from known models
        return "unknown field"
    allowed = list(parent.model_fields)
    if issubclass(parent, EmptySpec):
        return "unknown field: this kind takes no spec fields"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if not close:
        close = [a for a in allowed if a.lower() == key.lower()]
    if parent is Config:
        takes = ", ".join(allowed)
        if close:
            return f"unknown config key {key!r}; did you mean {close[0]!r}? (config takes {takes})"
        return (
            f"unknown config key {key!r}: raw Docker options are not accepted, "
            f"host access is admin-only; config takes {takes}"
        )
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {key!r}{guess} (allowed: {', '.join(allowed)})"


def model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the value at ``loc`` inside ``model``."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    return _as_model(current)


def _as_model(tp: Any) -> type[BaseModel] | None:
    origin = get_origin(tp)
    if origin is Annotated:
        return _as_model(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            found = _as_model(arg)
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return None


def _step(tp: Any, part: str | int) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        return _step(get_args(tp)[0], part)
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            found = _step(arg, part)
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return None if field is None else field.annotation
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict and isinstance(part, str):
        return get_args(tp)[1]
    return None
