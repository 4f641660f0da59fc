"""Prometheus metrics of one API process: requests by route and status, request and
store latency. Each app owns its registry, so several apps can live in one process
(tests, `dora up`).

What every request counts (`dora_api_requests`, `dora_api_request_seconds`,
`dora_api_list_cache`) is kept in plain dicts by `RequestStats` and turned into
metric families only when ``/metrics`` is read: a prometheus_client child takes a lock
and checks its labels on each increment, ~1 µs four times a request, where one thread
(the event loop) is the only writer anyway."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from dora.store import Store

_le = cast(Callable[[float], str], floatToGoString)
"""A bucket bound as prometheus_client writes it (``le`` label)."""

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class RequestStats:
    """Per-request counts, written by the event loop's thread only, collected on
    demand (a prometheus_client custom collector)."""

    def __init__(self, buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.requests: dict[tuple[str, str, int], int] = {}
        """(route template, method, status) → requests."""
        self.latency: dict[str, list[float]] = {}
        """route template → requests per bucket (the last one +Inf), then their sum."""
        self.list_cache: dict[str, int] = {"hit": 0, "miss": 0}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        latency = self.latency.get(route)
        if latency is None:
            latency = self.latency[route] = [0.0] * (len(self.buckets) + 2)
        latency[bisect_left(self.buckets, seconds)] += 1
        latency[-1] += seconds

    def describe(self) -> Iterator[Metric]:
        return self._families(empty=True)

    def collect(self) -> Iterator[Metric]:
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "dora_api_requests",
            "API requests by route template, method and status",
            labels=["route", "method", "status"],
        )
        latency = HistogramMetricFamily(
            "dora_api_request_seconds",
            "API request latency by route template",
            labels=["route"],
        )
        cache = CounterMetricFamily(
            "dora_api_list_cache",
            "Resource listings answered from memory (hit) or read from the store (miss)",
            labels=["result"],
        )
        if not empty:
            for (route, method, status), count in list(self.requests.items()):
                requests.add_metric([route, method, str(status)], count)
            bounds = [*(_le(b) for b in self.buckets), "+Inf"]
            for route, counts in list(self.latency.items()):
                cumulative, running = [], 0.0
                for bound, n in zip(bounds, counts[:-1], strict=True):
                    running += n
                    cumulative.append((bound, running))
                latency.add_metric([route], cumulative, sum_value=counts[-1])
            for result, count in self.list_cache.items():
                cache.add_metric([result], count)
        yield requests
        yield latency
        yield cache


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stats = RequestStats()
        self.registry.register(self.stats)
        self.store_seconds = Histogram(
            "dora_store_call_seconds",
            "State store call latency by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
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
