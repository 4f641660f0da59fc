"""`RequestStats` (plain dicts, collected on demand) exposes exactly what the
prometheus_client metrics it replaces exposed for the same requests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from dora.api.metrics import _LATENCY_BUCKETS, Metrics, RequestStats

REQUESTS = [
    ("/v1/apply", "POST", 200, 0.0004),
    ("/v1/apply", "POST", 200, 0.001),  # exactly on a bound: counted in it (le)
    ("/v1/apply", "POST", 409, 0.03),
    ("/v1/resources/{kind}", "GET", 200, 0.0021),
    ("/v1/resources/{kind}", "GET", 200, 12.0),  # past the last bound: +Inf only
    ("unmatched", "GET", 404, 0.0001),
]


def lines(text: bytes, *prefixes: str) -> list[str]:
    return sorted(
        line
        for line in text.decode().splitlines()
        if line.startswith(prefixes) and "_created" not in line
    )


def test_the_exposition_is_the_one_of_prometheus_client_metrics() -> None:
    reference = CollectorRegistry()
    counter = Counter("dora_api_requests", "x", ["route", "method", "status"], registry=reference)
    histogram = Histogram(
        "dora_api_request_seconds", "x", ["route"], buckets=_LATENCY_BUCKETS, registry=reference
    )
    cache = Counter("dora_api_list_cache", "x", ["result"], registry=reference)
    stats = RequestStats()
    mine = CollectorRegistry()
    mine.register(stats)
    for route, method, status, seconds in REQUESTS:
        counter.labels(route, method, str(status)).inc()
        histogram.labels(route).observe(seconds)
        stats.record(route, method, status, seconds)
    for result in ("hit", "hit", "miss"):
        cache.labels(result).inc()
        stats.list_cache[result] += 1
    names = (
        "dora_api_requests_total",
        "dora_api_request_seconds_",
        "dora_api_list_cache_total",
        "# TYPE dora_api_",
    )
    expected = lines(generate_latest(reference), *names)
    assert lines(generate_latest(mine), *names) == expected
    assert any('le="+Inf"' in line and "resources" in line for line in expected)


def test_metrics_render_every_family_before_any_request() -> None:
    text = Metrics().render().decode()
    for family in (
        "dora_api_requests_total counter",
        "dora_api_request_seconds histogram",
        "dora_api_list_cache_total counter",
    ):
        assert f"# TYPE {family}" in text
    assert 'dora_api_list_cache_total{result="hit"} 0.0' in text
