"""Python's cyclic garbage collector, paused while a scheduler pass runs.

A pass over a burst (10,000 new workloads) allocates and keeps hundreds of thousands
of objects (records, their dicts, writes, events); each kept object counts towards
the collector's thresholds, so the collector ran its full, whole-heap pass several
times inside one such pass, each walking every record of the snapshot again (4 full
passes, 0.55 CPU s of a 4.2 CPU s pass at 1,000 nodes). What a pass drops is freed
by reference counting as usual; only garbage in reference cycles (rare here: a
failed task's traceback) waits for the collector, which runs again once the pass is
over: one young-generation collection at the end of the pass, counted in its time.

Process-wide and re-entrant: `dora up` runs several schedulers' passes (and the API)
on one event loop, and two passes may interleave at their awaits; the collector runs
again when the last one ends, and never when something else had disabled it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused"]

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside the block (see the module docstring)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            resume = _depth == 0 and _resume
            if resume:
                gc.enable()
        if resume:
            gc.collect(0)
