"""Workload selectors: which CPUs, GPUs and node a replica needs.

``count`` of GPUs is exclusive devices; of CPUs either whole CPUs (exclusive cores,
an integer) or millicores (a shared fraction, ``"500m"``). ``product_name`` is
``All``, one model name or a list of them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from dora.model.scalars import (
    ALL,
    MAX_CPUS,
    GpuCount,
    NameOrAll,
    at,
    describe,
    fail,
    number_text_hint,
    scalar_text,
)
from dora.model.specs.base import Spec


def _product_name(value: Any) -> str | list[str]:
    if isinstance(value, list):
        if not value:
            fail(f"must not be an empty list; write {ALL} for any model")
        return [at(i, scalar_text, item) for i, item in enumerate(value)]
    return scalar_text(value)


ProductName = Annotated[str | list[str], BeforeValidator(_product_name)]
"""``All``, one product name, or a list of them."""

_MILLICORES = re.compile(r"([1-9][0-9]*)m")
_CPU_COUNT_RULE = 'must be an integer >= 1 or millicores like "500m"'


def _cpu_count(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_CPUS:
            fail(f"{_CPU_COUNT_RULE}, at most {MAX_CPUS} (got {value})")
        return value
    if isinstance(value, str):
        if _MILLICORES.fullmatch(value):
            if int(value[:-1]) > MAX_CPUS * 1000:
                fail(f"at most {MAX_CPUS * 1000}m (got {describe(value)})")
            return value
        hint = number_text_hint(value)
        if hint:
            fail(f"{hint} (got {describe(value)})")
    fail(f"{_CPU_COUNT_RULE} (got {describe(value)})")


CpuCount = Annotated[int | str, BeforeValidator(_cpu_count)]


def _names(product_name: str | list[str]) -> tuple[str, ...] | None:
    names = (product_name,) if isinstance(product_name, str) else tuple(product_name)
    return None if ALL in names else names


class CpuSelector(Spec):
    """CPUs: ``count`` whole CPUs (exclusive cores) or ``"<N>m"`` millicores (shared)."""

    product_name: ProductName = ALL
    count: CpuCount = 1

    @property
    def is_millicores(self) -> bool:
        """True for a shared, fractional request (``"500m"``), false for whole CPUs."""
        return isinstance(self.count, str)

    @property
    def millicores(self) -> int:
        """The request in thousandths of a CPU (``2`` → 2000, ``"500m"`` → 500)."""
        if isinstance(self.count, str):
            return int(self.count[:-1])
        return self.count * 1000

    def product_names(self) -> tuple[str, ...] | None:
        """Acceptable CPU models, or ``None`` for any."""
        return _names(self.product_name)


class GpuSelector(Spec):
    """GPUs: ``count`` whole devices of one of the ``product_name`` models."""

    product_name: ProductName = ALL
    count: GpuCount = 1

    def product_names(self) -> tuple[str, ...] | None:
        """Acceptable GPU models, or ``None`` for any."""
        return _names(self.product_name)


class NodeSelector(Spec):
    """Pin to one node by name (``All`` = no pin)."""

    name: NameOrAll


class Selectors(Spec):
    cpu: CpuSelector | None = None
    gpu: GpuSelector | None = None
    node: NodeSelector | None = None
