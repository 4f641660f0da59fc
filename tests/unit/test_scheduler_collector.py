"""The garbage collector pause around scheduler passes (`dora.scheduler.collector`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dora.scheduler import collector


@pytest.fixture(autouse=True)
def _collector_enabled() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_no_automatic_collection_inside_and_again_after() -> None:
    with collector.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_interleaved_passes_resume_it_when_the_last_one_ends() -> None:
    # Two passes on one event loop interleave at their awaits: A starts, B starts,
    # A ends (B still runs: still paused), B ends.
    a, b = collector.paused(), collector.paused()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert not gc.isenabled()
    b.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_disabled_by_someone_else_stays_disabled() -> None:
    gc.disable()
    with collector.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_an_error_in_the_pass_still_resumes_it() -> None:
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("the pass failed")
    assert gc.isenabled()


def test_the_garbage_of_the_pause_is_collected_when_it_ends() -> None:
    class Node:
        other: Node | None = None

    with collector.paused():
        first, second = Node(), Node()
        first.other, second.other = second, first  # a cycle: refcounts never free it
        alive = [id(first), id(second)]
        del first, second
        assert any(id(o) in alive for o in gc.get_objects(generation=0))
    assert not any(id(o) in alive and type(o) is Node for o in gc.get_objects())
