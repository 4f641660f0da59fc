"""Base class of every spec model: strict, closed, immutable."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """A kind's ``spec``.

    Strict so that YAML values are never coerced behind the user's back (lax pydantic
    would turn ``"2"`` into 2 and ``gpus: no`` into 0); ``extra="forbid"`` so that a
    misspelt field is an error instead of a silently ignored setting; frozen because a
    spec is the record of what was applied: change it with ``model_copy(update=...)``.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with defaults filled and unset optional fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


class EmptySpec(Spec):
    """Spec of kinds that have none (Workspace, Usercredit): only ``{}`` or absent."""
