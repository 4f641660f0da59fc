"""The document envelope (apiVersion, kind, metadata, spec, meta) and :class:`Resource`.

:func:`parse_document` is the one entry point from untrusted data to a validated
resource: the CLI (YAML files), the API (JSON bodies) and tests all go through it,
so a document means the same thing everywhere. It reports *every* problem it finds
in the document, not just the first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dora.model.errors import DocumentError, Issue, LoadError
from dora.model.kinds import KINDS, KindInfo, unknown_kind_message
from dora.model.scalars import ALL, NAME_MAX, YamlFloat, describe, name_problem, scalar_text
from dora.model.specs import SPEC_MODELS, ResourcecreditSpec, Spec, WorkloadSpec
from dora.model.specs.base import EmptySpec
from dora.model.translate import Loc, format_path, problems_from_error

API_VERSION = "v1"
TOP_LEVEL_KEYS = ("apiVersion", "kind", "metadata", "spec", "meta")
METADATA_KEYS = ("name", "zone", "workspace", "group")
RESERVED_NAMES: dict[str, str] = {
    "Zone": "every zone",
    "Workspace": "every workspace",
    "Node": "any node",
}
"""Kinds whose resources may not be called ``All``: the word is their wildcard."""

MAX_META_DEPTH = 64

S = TypeVar("S", bound=Spec)

_CONTAINER_NAME = re.compile(r"(?P<workload>.+)\.(?P<index>[1-9][0-9]*)")
_PRODUCT_NAME_BAD = re.compile(r"[\x00-\x1f\x7f/]")


# --- names --------------------------------------------------------------------------


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


def _scope_problems(
    info: KindInfo, zone: Any, workspace: Any, ws_key: str
) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    if zone is not None and not info.zoned:
        out.append(
            (("metadata", "zone"), f"{info.name} is a global kind: metadata.zone is not allowed")
        )
    if workspace is not None and not info.workspaced:
        scope = "a global kind" if not info.zoned else "zoned but not workspaced"
        out.append(
            (("metadata", ws_key), f"{info.name} is {scope}: metadata.{ws_key} is not allowed")
        )
    return out


# --- the resource -------------------------------------------------------------------


class Resource(BaseModel):
    """A validated document.

    ``zone`` / ``workspace`` are ``None`` when the document leaves them to the
    caller's defaults (``-z``, the token's default workspace, the API's ``ZONE``).
    ``spec`` is the kind's spec model (see :data:`dora.model.SPEC_MODELS`) with every
    default filled; ``meta`` is the free-form top-level ``meta``, stored as-is.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: str
    name: str
    zone: str | None = None
    workspace: str | None = None
    spec: SerializeAsAny[Spec] = Field(default_factory=EmptySpec)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _spec_from_kind(cls, data: Any) -> Any:
        # Lets ``Resource.model_validate({"kind": ..., "spec": {...}})`` build the right
        # spec model; ``parse_document`` passes ready models and is unaffected.
        if isinstance(data, dict) and data.get("kind") in SPEC_MODELS:
            spec = data.get("spec")
            if spec is None or isinstance(spec, dict):
                data = {**data, "spec": SPEC_MODELS[data["kind"]].model_validate(spec or {})}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Resource:
        model = SPEC_MODELS.get(self.kind)
        if model is None:
            raise PydanticCustomError("dora", "{reason}", {"reason": _kind_problem(self.kind)})
        problems = _scope_problems(self.info, self.zone, self.workspace, "workspace")
        name_issue = resource_name_problem(self.kind, self.name)
        if name_issue:
            problems.append((("name",), name_issue))
        if type(self.spec) is not model:
            problems.append((("spec",), f"must be a {model.__name__} for kind {self.kind}"))
        if problems:
            text = "; ".join(f"{format_path(loc)}: {msg}" for loc, msg in problems)
            raise PydanticCustomError("dora", "{reason}", {"reason": text})
        return self

    @property
    def info(self) -> KindInfo:
        return KINDS[self.kind]

    def spec_as(self, model: type[S]) -> S:
        """The spec, typed: ``r.spec_as(WorkloadSpec)``; ``TypeError`` if it is another kind."""
        if not isinstance(self.spec, model):
            raise TypeError(f"{self.kind} {self.name} has a {type(self.spec).__name__}")
        return self.spec

    def spec_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data, defaults filled, unset optional fields omitted."""
        return self.spec.to_dict()

    def to_document(self) -> dict[str, Any]:
        """The canonical document: what ``parse_document`` reads back into an equal Resource."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.zone is not None:
            metadata["zone"] = self.zone
        if self.workspace is not None:
            metadata["workspace"] = self.workspace
        doc: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": metadata,
            "spec": self.spec_dict(),
        }
        if self.meta:
            doc["meta"] = self.meta
        return doc


def container_for(workload: Resource, index: int) -> Resource:
    """The Container resource for replica ``index`` (from 1) of ``workload``.

    Its spec is the workload's spec (the same immutable object).
    """
    if workload.kind != "Workload":
        raise ValueError(f"expected a Workload, got {workload.kind}")
    return Resource(
        kind="Container",
        name=container_name(workload.name, index),
        zone=workload.zone,
        workspace=workload.workspace,
        spec=workload.spec_as(WorkloadSpec),
        meta=dict(workload.meta),
    )


# --- parsing ------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentResult:
    """Outcome of one document of a stream: a resource, or the issues that prevent it."""

    index: int
    source: str | None
    resource: Resource | None
    issues: tuple[Issue, ...] = ()

    @property
    def ok(self) -> bool:
        return self.resource is not None and not self.issues


def _kind_problem(kind: Any) -> str:
    if not isinstance(kind, str):
        return f"must be a string naming a kind (got {describe(kind)})"
    info = KINDS.get(kind)
    if info is not None and info.readonly:
        return f"{kind} is a read-only view computed from node reports; it cannot be applied"
    return unknown_kind_message(kind)


def _text(value: Any) -> tuple[str | None, str | None]:
    """(text, problem) for a scalar that must be a string."""
    try:
        return scalar_text(value), None
    except PydanticCustomError as exc:
        return None, str((exc.context or {}).get("reason", exc.message()))


def parse_document(
    obj: Any,
    index: int = 0,
    source: str | None = None,
    *,
    lines: Mapping[Loc, int] | None = None,
) -> Resource:
    """Validate one document (a mapping from YAML or JSON) into a :class:`Resource`.

    ``index`` is the document's 0-based position in its stream; issues count from 1
    (``doc 1``). ``lines`` maps field locations to source lines (the YAML loader
    passes it) so issues can point at a line. Raises :class:`DocumentError` with
    every issue found.
    """
    problems: list[tuple[Loc, str]] = []
    resource: Resource | None = None
    if not isinstance(obj, dict):
        problems.append(
            (
                (),
                "a document must be a mapping with apiVersion, kind, metadata and spec "
                f"(got {describe(obj)})",
            )
        )
    else:
        resource = _parse_mapping(obj, problems)
    if problems or resource is None:
        raise DocumentError(_issues(problems, index, source, lines))
    return resource


def _parse_mapping(obj: dict[Any, Any], problems: list[tuple[Loc, str]]) -> Resource | None:
    for key in obj:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                (
                    (str(key),),
                    f"unknown top-level field {str(key)!r}; "
                    f"a document has {', '.join(TOP_LEVEL_KEYS)}",
                )
            )

    if "apiVersion" not in obj:
        problems.append(
            (("apiVersion",), f"required field is missing (write apiVersion: {API_VERSION})")
        )
    elif obj["apiVersion"] != API_VERSION:
        problems.append(
            (("apiVersion",), f"must be {API_VERSION} (got {describe(obj['apiVersion'])})")
        )

    info: KindInfo | None = None
    kind = obj.get("kind")
    if "kind" not in obj:
        problems.append((("kind",), "required field is missing"))
    elif isinstance(kind, str) and kind in SPEC_MODELS:
        info = KINDS[kind]
    else:
        problems.append((("kind",), _kind_problem(kind)))

    if info is None:
        # Not a Dora document (a Kubernetes manifest, a typo in kind): the rest of it
        # cannot be interpreted, so its fields are not reported one by one.
        return None

    name, zone, workspace = _parse_metadata(obj, info, problems)

    spec = _parse_spec(info, obj.get("spec"), problems)
    if isinstance(spec, ResourcecreditSpec) and name is not None:
        if spec.product_name is None:
            spec = spec.model_copy(update={"product_name": name})
        elif spec.product_name != name:
            problems.append(
                (
                    ("spec", "product_name"),
                    f"must equal metadata.name ({describe(name)}): credits are looked up by name",
                )
            )

    meta = _parse_meta(obj.get("meta"), problems)

    if problems or name is None or spec is None or meta is None:
        return None
    return Resource(kind=info.name, name=name, zone=zone, workspace=workspace, spec=spec, meta=meta)


def _parse_metadata(
    obj: dict[Any, Any], info: KindInfo, problems: list[tuple[Loc, str]]
) -> tuple[str | None, str | None, str | None]:
    metadata = obj.get("metadata")
    if metadata is None:
        problems.append((("metadata",), "required field is missing (it holds at least the name)"))
        return None, None, None
    if not isinstance(metadata, dict):
        problems.append((("metadata",), f"must be a mapping (got {describe(metadata)})"))
        return None, None, None
    for key in metadata:
        if key not in METADATA_KEYS:
            problems.append(
                (
                    ("metadata", str(key)),
                    f"unknown field {str(key)!r}; metadata has name, zone and workspace (or group)",
                )
            )

    name: str | None = None
    if metadata.get("name") is None:
        problems.append((("metadata", "name"), "required field is missing"))
    else:
        name, problem = _text(metadata["name"])
        if name is not None:
            problem = resource_name_problem(info.name, name)
        if problem:
            problems.append((("metadata", "name"), problem))
            name = None

    zone = _scoped_name(metadata, "zone", problems)
    group = _scoped_name(metadata, "group", problems)
    workspace = _scoped_name(metadata, "workspace", problems)
    ws_key = (
        "workspace" if "workspace" in metadata and metadata["workspace"] is not None else "group"
    )
    if group is not None and workspace is not None and group != workspace:
        problems.append(
            (
                ("metadata", "workspace"),
                f"metadata.group ({describe(group)}) and metadata.workspace "
                f"({describe(workspace)}) differ; they are synonyms, keep one",
            )
        )
    workspace = workspace if workspace is not None else group
    problems.extend(_scope_problems(info, metadata.get("zone"), metadata.get(ws_key), ws_key))
    return name, zone, workspace


def _scoped_name(metadata: dict[Any, Any], key: str, problems: list[tuple[Loc, str]]) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    text, problem = _text(value)
    if text is not None:
        problem = name_problem(text)
        if problem is None and text == ALL:
            problem = f"{ALL} is a wildcard, not a {'zone' if key == 'zone' else 'workspace'} name"
    if problem:
        problems.append((("metadata", key), problem))
        return None
    return text


def _parse_spec(info: KindInfo, raw: Any, problems: list[tuple[Loc, str]]) -> Spec | None:
    model = SPEC_MODELS[info.name]
    try:
        return model.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        problems.extend((("spec", *loc), msg) for loc, msg in problems_from_error(exc, model))
        return None


def _parse_meta(raw: Any, problems: list[tuple[Loc, str]]) -> dict[str, Any] | None:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append((("meta",), f"must be a mapping (got {describe(raw)})"))
        return None
    before = len(problems)
    value = _plain(raw, ("meta",), problems)
    return value if len(problems) == before and isinstance(value, dict) else None


def _plain(value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    """Free-form data as plain JSON types (YAML floats lose their source text here)."""
    if len(loc) > MAX_META_DEPTH:
        problems.append((loc, f"nested more than {MAX_META_DEPTH} levels deep"))
        return None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(
                    ((*loc, str(key)), f"keys must be strings (got {describe(key)}); quote it")
                )
                continue
            out[key] = _plain(item, (*loc, key), problems)
        return out
    if isinstance(value, list):
        return [_plain(item, (*loc, i), problems) for i, item in enumerate(value)]
    if isinstance(value, YamlFloat) or (isinstance(value, float) and not isinstance(value, bool)):
        if not math.isfinite(value):
            problems.append((loc, f"must be a finite number (got {describe(value)})"))
        return float(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    problems.append((loc, f"must be JSON data (got {describe(value)})"))
    return None


def _issues(
    problems: list[tuple[Loc, str]], index: int, source: str | None, lines: Mapping[Loc, int] | None
) -> list[Issue]:
    return [
        Issue(index + 1, source, format_path(loc), message, _line_of(loc, lines))
        for loc, message in problems
    ]


def _line_of(loc: Loc, lines: Mapping[Loc, int] | None) -> int | None:
    if not lines:
        return None
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def check_objects(obj: Any, source: str | None = None) -> list[DocumentResult]:
    """Validate a parsed JSON body: one document (a mapping) or a list of them.

    Returns one result per document, good or bad, so a caller can apply the good
    ones and report the others.
    """
    docs = obj if isinstance(obj, list) else [obj]
    results: list[DocumentResult] = []
    for i, doc in enumerate(docs):
        try:
            resource = parse_document(doc, i, source)
        except DocumentError as exc:
            results.append(DocumentResult(i + 1, source, None, tuple(exc.issues)))
        else:
            results.append(DocumentResult(i + 1, source, resource))
    return results


def load_objects(obj: Any, source: str | None = None) -> list[Resource]:
    """Like :func:`check_objects` but all-or-nothing: raises :class:`LoadError`."""
    return resources_or_raise(check_objects(obj, source))


def resources_or_raise(results: list[DocumentResult]) -> list[Resource]:
    """The resources of ``results``, or :class:`LoadError` with every issue of every document."""
    issues = [issue for result in results for issue in result.issues]
    if issues:
        raise LoadError(issues)
    return [r.resource for r in results if r.resource is not None]
