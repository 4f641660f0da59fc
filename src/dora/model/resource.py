"""The validated resource: kind, name, scope (zone, workspace), spec model and meta."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, model_validator
from pydantic_core import PydanticCustomError

from dora.model.kinds import KINDS, KindInfo, unknown_kind_message
from dora.model.names import container_name, resource_name_problem
from dora.model.scalars import ALL, describe, name_problem
from dora.model.specs import SPEC_MODELS, Spec, WorkloadSpec
from dora.model.specs.base import EmptySpec
from dora.model.translate import Loc, format_path

API_VERSION = "v1"

S = TypeVar("S", bound=Spec)


def kind_problem(kind: Any) -> str:
    """Why ``kind`` cannot be applied: not a string, a read-only view, or unknown."""
    if not isinstance(kind, str):
        return f"must be a string naming a kind (got {describe(kind)})"
    info = KINDS.get(kind)
    if info is not None and info.readonly:
        return f"{kind} is a read-only view computed from node reports; it cannot be applied"
    return unknown_kind_message(kind)


def scope_problems(info: KindInfo, zone: Any, workspace: Any, ws_key: str) -> list[tuple[Loc, str]]:
    """Metadata keys the kind's scope forbids: a zone on a global kind, a workspace
    (given as ``ws_key``: ``workspace`` or ``group``) on a kind that is not workspaced."""
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
            raise PydanticCustomError("dora", "{reason}", {"reason": kind_problem(self.kind)})
        problems = scope_problems(self.info, self.zone, self.workspace, "workspace")
        name_issue = resource_name_problem(self.kind, self.name)
        if name_issue:
            problems.append((("name",), name_issue))
        for key, value in (("zone", self.zone), ("workspace", self.workspace)):
            scope_issue = None if value is None else name_problem(value)
            if scope_issue is None and value == ALL:
                scope_issue = f"{ALL} is a wildcard, not a {key} name"
            if scope_issue:
                problems.append(((key,), scope_issue))
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
