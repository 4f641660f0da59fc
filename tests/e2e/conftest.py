"""End-to-end tests: real processes, the real CLI, the real Docker engine.

Each test module builds its cluster with `tests.e2e.cluster.cluster_context`, which
stops its processes by pid and removes its containers and data directory even when a
test fails. This file adds a last safety net for the session: whatever container still
carries this session's label at the end is removed.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, remove_session_containers


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """A failed test gets its cluster's warnings, errors and tracebacks in its report:
    module-scoped clusters outlive the test, and their logs go with their data
    directory when the module ends."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        cluster = value if isinstance(value, Cluster) else getattr(value, "c", None)
        if isinstance(cluster, Cluster):
            report.sections.append(("cluster logs: warnings and errors", cluster.errors()))


@pytest.fixture(scope="session", autouse=True)
def _remove_leftover_containers() -> Iterator[None]:
    yield
    remove_session_containers()
