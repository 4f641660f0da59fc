"""The Python SDK: typed sync and async clients of the Dora API (the CLI uses them)."""

from dora.client.client import AsyncClient, Client
from dora.client.errors import (
    Conflict,
    ConnectionFailed,
    DoraError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from dora.client.workload import Workload, WorkloadTimeout

__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DoraError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "Workload",
    "WorkloadTimeout",
]
