"""Workload image and runtime config: image, pull policy, command, environment,
placement affinity, restart policy, shared memory, maximum run time.

``config`` takes exactly these keys. The original passed any other array or object
key straight to Docker's create options; here such keys are rejected (see
:data:`dora.model.specs.workload.ADMIN_ONLY_KEYS`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from dora.model.scalars import Choice, at, describe, fail, number_text_hint, scalar_text
from dora.model.specs.base import Spec

DriverValue = Literal["Docker"]
Driver = Annotated[DriverValue, BeforeValidator(Choice.of(DriverValue))]

PullPolicyValue = Literal["Always", "IfNotPresent", "Never"]
PullPolicy = Annotated[PullPolicyValue, BeforeValidator(Choice.of(PullPolicyValue))]

AffinityValue = Literal["First", "Random", "Distribute", "Fill"]
Affinity = Annotated[AffinityValue, BeforeValidator(Choice.of(AffinityValue))]

RestartPolicyValue = Literal["Never", "Always", "OnFailure"]
RestartPolicy = Annotated[RestartPolicyValue, BeforeValidator(Choice.of(RestartPolicyValue))]


def _image_ref(value: Any) -> str:
    text = scalar_text(value)
    if any(c.isspace() for c in text) or len(text) > 1024:
        fail(f"must be an image reference like busybox:1.36 (got {describe(value)})")
    return text


class Image(Spec):
    """The container image. ``pullPolicy`` defaults to IfNotPresent, as the docs say."""

    image: Annotated[str, BeforeValidator(_image_ref)]
    pullPolicy: PullPolicy = "IfNotPresent"


def _cmd(value: Any) -> str | list[str]:
    if isinstance(value, list):
        if not value:
            fail("must not be an empty list")
        return [
            at(i, lambda v: scalar_text(v, allow_empty=True), item) for i, item in enumerate(value)
        ]
    return scalar_text(value)


Cmd = Annotated[str | list[str], BeforeValidator(_cmd)]

_ENV_NAME = re.compile(r"[^=\s]+")


def _env_name(name: Any) -> str:
    text = scalar_text(name)
    if not _ENV_NAME.fullmatch(text):
        fail(f"must be a variable name without '=' or spaces (got {describe(name)})")
    return text


def _env_value(value: Any) -> str:
    if value is None:
        fail('needs a value; write "" for an empty one')
    return scalar_text(value, allow_empty=True)


def _env(value: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item:
                fail(f'must be "NAME=value" (got {describe(item)})', field=i)
            name, _, val = item.partition("=")
            at(i, _env_name, name)
            if name in env:
                fail(f"sets {name} twice", field=i)
            env[name] = val
        return env
    if isinstance(value, dict):
        for key, val in value.items():
            name = at(str(key), _env_name, key)
            env[name] = at(str(key), _env_value, val)
        return env
    fail(f'must be a list of "NAME=value" or a mapping NAME: value (got {describe(value)})')


Env = Annotated[dict[str, str], BeforeValidator(_env)]

_SIZE = re.compile(r"(0|[1-9][0-9]*)\s*(|b|[kmgt]i?b?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MAX_BYTES = 2**53


def parse_size(text: str) -> int | None:
    """``"1g"`` → 1073741824. Units k, m, g, t are powers of 1024 (as Docker's)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        return None
    unit = match[2].lower()[:1]
    return int(match[1]) * _SIZE_UNITS[unit]


def _shm_size(value: Any) -> int:
    rule = 'must be a number of bytes or a size like "512m" or "1g"'
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (parsed := parse_size(value)) is not None:
        size = parsed
    else:
        hint = number_text_hint(value) if isinstance(value, str) else None
        fail(f"{hint or rule} (got {describe(value)})")
    if not 0 < size <= _MAX_BYTES:
        fail(f"{rule}, more than 0 (got {describe(value)})")
    return size


ShmSize = Annotated[int, BeforeValidator(_shm_size)]

_DURATION = re.compile(r"([1-9][0-9]*)\s*([smhd])", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """``"90m"`` → 5400. ``text`` must already be a valid ``maxRunTime``."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return int(match[1]) * _SECONDS[match[2].lower()]


def _max_run_time(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value}s"
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        return f"{match[1]}{match[2].lower()}"
    fail(f'must be a duration like "30m", "12h" or "2d" (s, m, h, d) (got {describe(value)})')


MaxRunTime = Annotated[str, BeforeValidator(_max_run_time)]
"""Normalised to ``<N><s|m|h|d>``; a bare integer means seconds."""


class Config(Spec):
    """How the container runs. Any other key (Docker options) is rejected."""

    cmd: Cmd | None = None
    env: Env = Field(default_factory=dict)
    affinity: Affinity = "First"
    restartPolicy: RestartPolicy = "Never"
    shmSize: ShmSize | None = None
    maxRunTime: MaxRunTime | None = None
