"""What every request handler needs, built once per app: settings, store, identity,
abuse filters, metrics and the clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dora.api.abuse import FailedAuthFilter, RateLimiter
from dora.api.identity import Identity
from dora.api.metrics import Metrics
from dora.api.services.storage_mounts import StorageMounts
from dora.api.settings import ApiSettings
from dora.auth.container_tokens import UsedOnce
from dora.store import Store


@dataclass
class ApiContext:
    settings: ApiSettings
    store: Store
    identity: Identity
    metrics: Metrics
    clock: Callable[[], float] = time.time
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server shuts down: long-polls answer at once instead of holding it."""
    container_tokens_used: UsedOnce = field(default_factory=UsedOnce)
    """Container tokens redeemed by this process (each opens one shell)."""
    failed_auth: FailedAuthFilter = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    storage_mounts: StorageMounts = field(init=False)

    def __post_init__(self) -> None:
        self.storage_mounts = StorageMounts(self.settings.storage_mounts, self.settings.data_dir)
        self.failed_auth = FailedAuthFilter(self.settings.abuse)
        self.rate_limiter = RateLimiter(self.settings.abuse)
