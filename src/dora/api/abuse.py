"""Abuse protection: a failed-authentication filter per client IP and a token-bucket
rate limit per caller. Both are in-process and take the clock as an argument.

The failed-auth filter counts failures in a sliding window, so a few typos spread over
time never add up to a ban (the original counted forever); a ban ends by itself.
Memory is bounded: at most `max_tracked` keys are remembered, oldest dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TypeVar

V = TypeVar("V")


@dataclass(frozen=True)
class AbuseSettings:
    max_failures: int = 10
    """Failed authentications from one IP within `window_s` that trigger a ban."""
    window_s: float = 60.0
    ban_s: float = 300.0
    rate_per_s: float = 100.0
    """Sustained requests per second allowed per caller (token, or IP when anonymous)."""
    burst: int = 200
    max_tracked: int = 100_000


class FailedAuthFilter:
    def __init__(self, settings: AbuseSettings) -> None:
        self._s = settings
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._banned_until: OrderedDict[str, float] = OrderedDict()

    def is_banned(self, ip: str, now: float) -> float:
        """Seconds left on `ip`'s ban, or 0."""
        until = self._banned_until.get(ip)
        if until is None:
            return 0.0
        if now >= until:
            del self._banned_until[ip]
            return 0.0
        return until - now

    def record_failure(self, ip: str, now: float) -> bool:
        """Count one failure; True when this failure starts a ban."""
        times = self._failures.pop(ip, None) or deque()
        cutoff = now - self._s.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        times.append(now)
        if len(times) >= self._s.max_failures:
            self._banned_until[ip] = now + self._s.ban_s
            _trim(self._banned_until, self._s.max_tracked)
            return True
        self._failures[ip] = times
        _trim(self._failures, self._s.max_tracked)
        return False


class RateLimiter:
    """Token bucket per key: `burst` requests at once, `rate_per_s` sustained."""

    def __init__(self, settings: AbuseSettings) -> None:
        self._s = settings
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str, now: float) -> float:
        """Take one token for `key`: 0 when allowed, else seconds until one is free."""
        tokens, last = self._buckets.pop(key, (float(self._s.burst), now))
        tokens = min(float(self._s.burst), tokens + (now - last) * self._s.rate_per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            _trim(self._buckets, self._s.max_tracked)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._s.rate_per_s


def _trim(mapping: OrderedDict[str, V], cap: int) -> None:
    """Forget the least recently touched keys beyond `cap`."""
    while len(mapping) > cap:
        mapping.popitem(last=False)
