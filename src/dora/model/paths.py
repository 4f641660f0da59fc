"""Reading manifests from files, directories and standard input.

A directory means every ``*.yaml`` / ``*.yml`` file below it, recursively, in sorted
order (hidden files and directories skipped), so ``dora apply -f manifests/`` is
repeatable. ``-`` means standard input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from dora.model.document import DocumentResult, resources_or_raise
from dora.model.errors import Issue, PathError
from dora.model.loader import check_documents
from dora.model.resource import Resource

STDIN = "-"
STDIN_SOURCE = "<stdin>"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class PathsReport:
    """Results of every document under the given paths, plus paths that could not be read."""

    results: list[DocumentResult] = field(default_factory=list)
    unreadable: list[PathError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unreadable and all(r.ok for r in self.results)

    @property
    def resources(self) -> list[Resource]:
        return [r.resource for r in self.results if r.resource is not None]


def expand_path(path: str) -> list[str]:
    """The files ``path`` stands for. Raises :class:`PathError` if it cannot be read."""
    if path == STDIN:
        return [STDIN]
    if os.path.isdir(path):
        found: list[str] = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(
                os.path.join(root, f)
                for f in sorted(files)
                if f.endswith(YAML_SUFFIXES) and not f.startswith(".")
            )
        if not found:
            raise PathError(path, "no *.yaml or *.yml files in this directory")
        return found
    if not os.path.exists(path):
        raise PathError(path, "no such file or directory")
    if not os.path.isfile(path):
        raise PathError(path, "not a regular file or directory")
    return [path]


def read_source(path: str, stdin: TextIO | None = None) -> str:
    """The text of one file (UTF-8, BOM allowed) or of standard input for ``-``.

    Raises :class:`PathError` when the file cannot be read, and ``UnicodeDecodeError``
    when it is not UTF-8.
    """
    if path == STDIN:
        return (stdin or sys.stdin).read()
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc)) from exc
    return data.decode("utf-8-sig")


def check_paths(paths: Sequence[str], stdin: TextIO | None = None) -> PathsReport:
    """Validate every document under ``paths``; never raises for bad content."""
    report = PathsReport()
    for path in paths:
        try:
            files = expand_path(path)
        except PathError as exc:
            report.unreadable.append(exc)
            continue
        for file in files:
            source = STDIN_SOURCE if file == STDIN else file
            try:
                text = read_source(file, stdin)
            except PathError as exc:
                report.unreadable.append(exc)
                continue
            except UnicodeDecodeError as exc:
                message = f"not UTF-8 text (byte {exc.start}): save the file as UTF-8"
                report.results.append(
                    DocumentResult(1, source, None, (Issue(1, source, "", message),))
                )
                continue
            report.results.extend(check_documents(text, source))
    return report


def load_paths(paths: Sequence[str], stdin: TextIO | None = None) -> list[Resource]:
    """Every resource under ``paths``, all or nothing.

    Raises :class:`PathError` for the first unreadable path, otherwise
    :class:`~dora.model.errors.LoadError` with the issues of every invalid document.
    """
    report = check_paths(paths, stdin)
    if report.unreadable:
        raise report.unreadable[0]
    return resources_or_raise(report.results)
