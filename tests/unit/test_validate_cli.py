"""`dora validate` as a user runs it: the installed command, exit codes, output lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DORA = REPO / ".venv" / "bin" / "dora"
ZONE = "apiVersion: v1\nkind: Zone\nmetadata:\n  name: {name}\n"


def dora(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DORA), "validate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_examples_folder_is_valid() -> None:
    out = dora("-f", "examples/")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "ok   examples/nodes.yaml doc 2: Node node2" in lines
    assert "ok   examples/workload.yaml doc 1: Workload hello" in lines
    assert lines[-1] == "12 documents valid, 0 invalid"


def test_invalid_documents_exit_1_with_one_line_per_issue(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        ZONE.format(name="z1")
        + "---\napiVersion: v1\nkind: Workload\nmetadata: {name: a}\n"
        + "spec:\n  image: {image: busybox}\n  replica: {count: two}\n  binds: ['/:/host']\n",
        encoding="utf-8",
    )
    out = dora("-f", str(job))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0] == f"ok   {job} doc 1: Zone z1"
    assert lines[1] == (
        f"error {job} doc 2: spec.replica.count: "
        'must be an integer between 0 and 10000 (got "two") (line 11)'
    )
    assert lines[2].startswith(f"error {job} doc 2: spec.binds: 'binds' is not allowed")
    assert lines[-1] == "1 documents valid, 1 invalid"


def test_quiet_prints_only_problems_and_the_summary(tmp_path: Path) -> None:
    out = dora("-q", "-f", "examples/")
    assert out.returncode == 0
    assert out.stdout.splitlines() == ["12 documents valid, 0 invalid"]


def test_stdin_and_several_files(tmp_path: Path) -> None:
    other = tmp_path / "z.yml"
    other.write_text(ZONE.format(name="z2"), encoding="utf-8")
    out = dora("-f", "-", "-f", str(other), stdin=ZONE.format(name="z1"))
    assert out.returncode == 0
    assert out.stdout.splitlines() == [
        "ok   <stdin> doc 1: Zone z1",
        f"ok   {other} doc 1: Zone z2",
        "2 documents valid, 0 invalid",
    ]


def test_unreadable_path_exits_2_after_checking_the_rest(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    out = dora("-f", "examples/zone-and-storage.yaml", "-f", str(missing))
    assert out.returncode == 2
    lines = out.stdout.splitlines()
    assert f"error {missing}: cannot read: no such file or directory" in lines
    assert lines[-1] == "2 documents valid, 0 invalid"


def test_bad_corpus_exits_1() -> None:
    bad_files = len(list((REPO / "tests" / "data" / "bad").glob("*.yaml")))
    out = dora("-q", "-f", "tests/data/bad")
    assert out.returncode == 1
    # Two files put a valid document before the bad one.
    assert out.stdout.splitlines()[-1] == f"2 documents valid, {bad_files} invalid"


def test_help_shows_examples_and_missing_file_is_a_usage_error() -> None:
    out = dora("--help")
    assert out.returncode == 0
    assert "dora validate -f manifests/" in out.stdout
    assert "Exit status" in out.stdout
    assert dora().returncode == 2
