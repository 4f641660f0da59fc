"""Parsing the document envelope (apiVersion, kind, metadata, spec, meta) into a Resource.

:func:`parse_document` is the one entry point from untrusted data to a validated
resource: the CLI (YAML files), the API (JSON bodies) and tests all go through it,
so a document means the same thing everywhere. It reports *every* problem it finds
in the document, not just the first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from dora.model.errors import DocumentError, Issue, LoadError
from dora.model.kinds import KINDS, KindInfo
from dora.model.names import resource_name_problem
from dora.model.resource import API_VERSION, Resource, kind_problem, scope_problems
from dora.model.scalars import ALL, YamlFloat, describe, name_problem, scalar_text
from dora.model.specs import SPEC_MODELS, ResourcecreditSpec, Spec
from dora.model.translate import Loc, format_path, problems_from_error

TOP_LEVEL_KEYS = ("apiVersion", "kind", "metadata", "spec", "meta")
METADATA_KEYS = ("name", "zone", "workspace", "group")

MAX_META_DEPTH = 64


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
        problems.append((("kind",), kind_problem(kind)))

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
    problems.extend(scope_problems(info, metadata.get("zone"), metadata.get(ws_key), ws_key))
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
    issues = [
        Issue(index + 1, source, format_path(loc), message, _line_of(loc, lines))
        for loc, message in problems
    ]
    # In file order when lines are known (stable, so equal lines keep field order).
    return sorted(issues, key=lambda i: i.line or 0)


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
