"""End-to-end tests: real processes, the real CLI, the real Docker engine.

Each test module builds its cluster with `tests.e2e.cluster.cluster_context`, which
stops its processes by pid and removes its containers and data directory even when a
test fails. This file adds a last safety net for the session: whatever container still
carries this session's label at the end is removed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cluster import remove_session_containers


@pytest.fixture(scope="session", autouse=True)
def _remove_leftover_containers() -> Iterator[None]:
    yield
    remove_session_containers()
