"""Helpers for tests that drive the `dora` CLI as a subprocess against a real API server.

`Cli` runs ``python -m dora.cli.main …`` with its own profiles file (``DORA_CONFIG``),
its own ``HOME`` and none of the caller's ``DORA_*`` variables, and keeps a transcript
of every command's stdout and stderr so a module can check, at the end, that no token
was ever printed except by ``dora token create`` (`Cli.assert_no_token_leaks`).

`SchedulerProcess` runs ``dora server scheduler`` on an `ApiProcess`'s database and
stops it by pid. `report_node` sends a node agent's heartbeat through the API's node
route, the way agents do. `check_golden` compares a ``dora get`` table with a file in
``tests/data/golden/`` after `normalise_table`.

Bytecode: the test environment sets PYTHONDONTWRITEBYTECODE, which makes every CLI
process compile all of its imports from source (≈0.5 s each). The CLI processes (and
the servers started with `SERVER_ENV`) write bytecode under a pytest cache folder
instead (``PYTHONPYCACHEPREFIX``), never into the source tree or the venv.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import TOKENS_SEEN, ZONE, ApiProcess, remember

REPO = Path(__file__).resolve().parent.parent
GOLDEN_DIR = REPO / "tests" / "data" / "golden"
EXAMPLES = REPO / "examples"
PYCACHE = Path(tempfile.gettempdir()) / f"dora-test-pycache-{os.getuid()}"
"""Bytecode of CLI and server processes (outside the tree; reused across runs)."""

BYTECODE_ENV = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(PYCACHE)}
SERVER_ENV = {**BYTECODE_ENV, "DORA_AUTH_MAX_FAILURES": "10000"}
"""Environment for test API servers: bytecode cache, and no per-IP ban (tests use
bad tokens on purpose; the ban has its own tests)."""

_CLI_SCRUB = ("DORA_CONFIG", "DORA_API_SERVER", "DORA_TOKEN", "DORA_PROFILE", "DORA_DEBUG")


@dataclass
class Result:
    argv: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"dora {' '.join(self.argv)} → {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@dataclass
class Cli:
    """Runs the CLI with a private profiles file; remembers everything it printed."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)
    transcript: list[Result] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config = self.home / ".dora" / "config"
        base = {k: v for k, v in os.environ.items() if k not in _CLI_SCRUB}
        base.update(BYTECODE_ENV, HOME=str(self.home), DORA_CONFIG=str(self.config))
        base.update(COLUMNS="200", NO_COLOR="1")
        self.base_env = base

    def run(
        self,
        *argv: str,
        env: Mapping[str, str | None] | None = None,
        stdin: str | None = None,
        expect: int | None = 0,
        timeout: float = 60,
    ) -> Result:
        """Run ``dora ARGV``; assert its exit status is `expect` (None: any)."""
        child_env = {**self.base_env, **self.env}
        for key, value in (env or {}).items():
            if value is None:
                child_env.pop(key, None)
            else:
                child_env[key] = value
        proc = subprocess.run(
            [sys.executable, "-m", "dora.cli.main", *argv],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=child_env,
            timeout=timeout,
        )
        result = Result(list(argv), proc.returncode, proc.stdout, proc.stderr)
        self.transcript.append(result)
        if expect is not None:
            assert result.code == expect, str(result)
        return result

    def login(self, api: ApiProcess, token: str, name: str = "admin") -> None:
        self.run("profile", "init", name, "--api-server", api.url, "--token", remember(token))

    def create_token(self, *argv: str) -> str:
        """``dora token create ARGV``: its only output line is the token."""
        result = self.run("token", "create", *argv)
        assert result.err == "", str(result)
        lines = result.lines
        assert len(lines) == 1, str(result)
        return remember(lines[0])

    def assert_no_token_leaks(self, extra: Iterable[str] = ()) -> None:
        """No command printed a token, except ``token create`` printing its own."""
        tokens = {t for t in (*TOKENS_SEEN, *extra) if t}
        assert tokens, "no token was seen: the check would prove nothing"
        leaks = []
        for result in self.transcript:
            created = result.out.strip() if result.argv[:2] == ["token", "create"] else None
            for token in tokens:
                stdout = result.out.replace(token, "", 1) if token == created else result.out
                if token in stdout or token in result.err:
                    leaks.append(f"dora {' '.join(result.argv[:3])} printed {token[:12]}…")
        assert not leaks, leaks


# ---------------------------------------------------------------------------- tables

VARIABLE_COLUMNS = frozenset({"age", "lastSeen", "uid", "revision"})
"""Columns whose cells depend on the clock, on random ids, or on how many times a
record was written (every node report bumps a node's revision)."""


def normalise_table(text: str, variable: Iterable[str] = VARIABLE_COLUMNS) -> str:
    """Replace the cells of the `variable` columns by ``~`` (``-``, no value, stays),
    keeping every column's width so the rest of the table compares byte for byte.

    Columns are located by their header: a header name starts its column and the next
    header name ends it (the last column runs to the end of the line). Every other cell
    (names, statuses, counts, models, reasons) must match the golden file exactly.
    """
    lines = text.rstrip("\n").split("\n")
    if not lines:
        return text
    header = lines[0]
    starts = [(m.start(), m.group()) for m in re.finditer(r"\S+", header)]
    spans: list[tuple[int, int | None]] = []
    for i, (start, name) in enumerate(starts):
        if name in set(variable):
            end = starts[i + 1][0] if i + 1 < len(starts) else None
            spans.append((start, end))
    out = [header]
    for line in lines[1:]:
        if set(line) == {"-"}:
            out.append(line)
            continue
        for start, end in spans:
            cell = line[start:end] if end is not None else line[start:]
            value = cell.strip()
            if value and value != "-":
                width = len(cell) if end is not None else len(value)
                replaced = "~".ljust(width)
                line = line[:start] + replaced + (line[end:] if end is not None else "")
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


def check_golden(name: str, text: str) -> None:
    """Compare `text` (normalised) with ``tests/data/golden/<name>.txt``.

    ``DORA_UPDATE_GOLDEN=1`` rewrites the file instead (review the diff!).
    """
    path = GOLDEN_DIR / f"{name}.txt"
    actual = normalise_table(text)
    if os.environ.get("DORA_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.exists(), f"missing golden file {path} (DORA_UPDATE_GOLDEN=1 writes it)"
    expected = path.read_text()
    assert actual == expected, f"{name}: table differs from {path}:\n{actual}"


def table_rows(text: str) -> list[list[str]]:
    """Cells of a ``dora get`` table (split on runs of two or more spaces), header first,
    without the dashed rule."""
    rows = []
    for line in text.rstrip("\n").split("\n"):
        if line and set(line) != {"-"}:
            rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


# ------------------------------------------------------------------------ node agents

V100 = "Tesla V100-SXM2-16GB"
XEON = "Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz"


def node_report(
    *,
    cpus: int = 4,
    gpus: int = 0,
    model: str = V100,
    containers: Sequence[Mapping[str, Any]] = (),
    version: str = "0.9.0",
) -> dict[str, Any]:
    """A `dora.api.schemas.NodeReport` body with fixed, plausible figures."""
    return {
        "version": version,
        "arch": "x86_64",
        "cpu_model": XEON,
        "cpu_count": cpus,
        "cpu_load": [round(5.0 * i, 1) for i in range(cpus)],
        "memory_total": 64 << 30,
        "memory_available": 48 << 30,
        "gpus": [
            {
                "index": i,
                "minor_number": i,
                "uuid": f"GPU-{i:08d}",
                "product_name": model,
                "memory_total_mb": 16384,
                "memory_used_mb": 512 * i,
                "temperature_c": 40 + i,
                "temperature_max_c": 85,
                "power_draw_w": 50.5 + i,
                "power_limit_w": 300,
            }
            for i in range(gpus)
        ],
        "containers": [dict(c) for c in containers],
    }


def report_node(
    api: ApiProcess, node_token: str, name: str, body: Mapping[str, Any], agent: str = ""
) -> dict[str, Any]:
    """POST /v1/nodes/NAME/report as a node agent (header ``X-Dora-Agent``)."""
    with api.client(node_token) as c:
        r = c.post(
            f"/v1/nodes/{name}/report",
            json=dict(body),
            headers={"X-Dora-Agent": agent or f"agent-{name}"},
        )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


# -------------------------------------------------------------------------- scheduler


class SchedulerProcess:
    """``dora server scheduler`` on the database of `api`; stopped by pid."""

    def __init__(self, api: ApiProcess, *, env: Mapping[str, str] | None = None) -> None:
        self.api = api
        self.log_path = api.data_dir / "scheduler.log"
        self.env = {k: v for k, v in api.env.items() if k not in ("INIT_DB", "secret")}
        self.env.update(ZONE=ZONE, **BYTECODE_ENV, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SchedulerProcess:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dora.cli.main", "server", "scheduler"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> SchedulerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def get_json(api: ApiProcess, token: str, path: str, **params: str) -> Any:
    with api.client(token) as c:
        r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def http(api: ApiProcess, token: str) -> httpx.Client:
    return api.client(token)
