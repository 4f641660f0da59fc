"""Error types of the resource model.

Every problem found in a document becomes an :class:`Issue` that names the document
(source file and 1-based index in a multi-document stream), the field path
(``spec.replica.count``) and a reason written for the person who typed the YAML. The
CLI prints them, the API returns them as JSON (:meth:`Issue.as_dict`), so both speak
the same language.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One problem in one document.

    ``path`` is empty for problems that concern the whole document (YAML syntax,
    a document that is not a mapping). ``line`` is the 1-based line in the source
    text when the document came from YAML, ``None`` otherwise.
    """

    doc_index: int
    source: str | None
    path: str
    message: str
    line: int | None = None

    def where(self) -> str:
        """``job.yaml doc 2``: which document, without the field."""
        doc = f"doc {self.doc_index}"
        return f"{self.source} {doc}" if self.source else doc

    def __str__(self) -> str:
        if self.path:
            return f"{self.where()}: {self.path}: {self.message}"
        return f"{self.where()}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, for API error bodies."""
        out: dict[str, Any] = {
            "doc": self.doc_index,
            "path": self.path,
            "message": self.message,
        }
        if self.source is not None:
            out["source"] = self.source
        if self.line is not None:
            out["line"] = self.line
        return out


class DocumentError(ValueError):
    """One or more documents are invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: list[Issue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid document")


class LoadError(DocumentError):
    """Raised by the multi-document loaders: the issues of *all* documents at once."""


class UnknownKindError(ValueError):
    """A kind name or alias that Dora does not know (the message lists the valid ones)."""


class PathError(OSError):
    """A path given to the loader cannot be read (missing, permission, not a file)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
