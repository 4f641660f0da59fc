"""Every file under tests/data/bad is rejected with the issue its header announces.

Each file starts with one or more ``# expect: doc N: <path>: <reason fragment>``
lines; at least one issue of the file must contain each expectation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dora.model import check_paths

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
CASES = sorted(BAD.glob("*.yaml"))


def _expectations(path: Path) -> list[str]:
    prefix = "# expect: "
    return [
        line[len(prefix) :]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(prefix)
    ]


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_document_is_rejected_with_the_expected_issue(path: Path) -> None:
    expectations = _expectations(path)
    assert expectations, f"{path.name} has no '# expect:' line"
    report = check_paths([str(path)])
    assert not report.unreadable
    assert not report.ok
    issues = [str(issue) for result in report.results for issue in result.issues]
    prefix = f"{path} "
    assert all(i.startswith(prefix) for i in issues)
    shown = [i[len(prefix) :] for i in issues]
    for expected in expectations:
        assert any(expected in issue for issue in shown), (expected, shown)
