"""Prometheus metrics of one API process: requests by route and status, request and
store latency. Each app owns its registry, so several apps can live in one process
(tests, `dora up`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from dora.store import Store

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dora_api_requests",
            "API requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "dora_api_request_seconds",
            "API request latency by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "dora_store_call_seconds",
            "State store call latency by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.list_cache = Counter(
            "dora_api_list_cache",
            "Resource listings answered from memory (hit) or read from the store (miss)",
            ["result"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "dora_api_auth_failures", "Failed authentications", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def instrument(self, store: Store) -> Store:
        """Wrap `store` so every call is timed into `dora_store_call_seconds`."""
        return cast(Store, _TimedStore(store, self.store_seconds))


class _TimedStore:
    def __init__(self, inner: Store, histogram: Histogram) -> None:
        self._inner = inner
        self._histogram = histogram

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        observe = self._histogram.labels(method=name).observe
        target = cast(Callable[..., Awaitable[Any]], attr)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await target(*args, **kwargs)
            finally:
                observe(time.perf_counter() - start)

        # Kept on the instance: later calls find it without `__getattr__` or a label
        # look-up (the store's methods do not change).
        setattr(self, name, timed)
        return timed
