"""Specs of the credit kinds: Resourcecredit (price of a GPU model) and Usercredit."""

from __future__ import annotations

from pydantic import Field

from dora.model.scalars import AnyText, NonNegNumber, Text
from dora.model.specs.base import EmptySpec, Spec


class CreditRate(Spec):
    """Credits charged per hour of one GPU."""

    hour: NonNegNumber


class CreditPer(Spec):
    per: CreditRate


class ResourcecreditSpec(Spec):
    """Price of one GPU model.

    The resource's *name* is the GPU product name (``Tesla V100-SXM2-16GB``): the
    credit system looks rates up by name. ``product_name`` repeats it; when absent it
    is filled with the name, when present it must equal the name.
    """

    product_name: Text | None = None
    credit: CreditPer
    annotations: dict[Text, AnyText] = Field(default_factory=dict)


class UsercreditSpec(EmptySpec):
    """Computed by the credit system (``computed`` holds totals); the spec is empty."""


__all__ = ["CreditPer", "CreditRate", "ResourcecreditSpec", "UsercreditSpec"]
