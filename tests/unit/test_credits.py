"""The credits reply from plain records (`dora.credits`): budget, amounts, zeros."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dora.credits import TOTAL_USED, WEEKLY_USED, amount, credits_view, weekly_limit

SPEC = {"credits": [{"zone": "z1", "weekly": 500}, {"zone": "z2", "weekly": 0}]}


def test_no_record_reads_as_zero_with_the_budget() -> None:
    view = credits_view("amy", "z1", SPEC, None, written_at=123.0)
    assert (view.user, view.zone) == ("amy", "z1")
    assert (view.weekly_limit, view.weekly_used, view.total_used) == (500.0, 0.0, 0.0)
    assert view.remaining == 500.0
    assert view.updated_at is None  # nothing computed yet: no checker write to date


def test_amounts_come_from_computed() -> None:
    computed = {WEEKLY_USED: 120.5, TOTAL_USED: 900, "resetDate": "2026-11-29"}
    view = credits_view("amy", "z1", SPEC, computed, written_at=1700.0)
    assert (view.weekly_used, view.total_used, view.remaining) == (120.5, 900.0, 379.5)
    assert view.updated_at == 1700.0


def test_the_field_names_are_the_originals() -> None:
    """The original checker wrote computed.weekly and computed.total (and `dora get
    uc` shows those columns): the new checker must keep them."""
    assert (WEEKLY_USED, TOTAL_USED) == ("weekly", "total")


def test_spent_budget_leaves_zero_not_a_negative_amount() -> None:
    assert credits_view("amy", "z1", SPEC, {WEEKLY_USED: 600}).remaining == 0.0
    assert credits_view("amy", "z2", SPEC, {WEEKLY_USED: 1}).remaining == 0.0


def test_no_budget_for_the_zone_is_unlimited() -> None:
    view = credits_view("amy", "z3", SPEC, {WEEKLY_USED: 5})
    assert (view.weekly_limit, view.remaining, view.weekly_used) == (None, None, 5.0)
    assert weekly_limit({}, "z1") is None
    assert weekly_limit({"credits": None}, "z1") is None


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (3, 3.0),
        (2.5, 2.5),
        (0, 0.0),
        (None, 0.0),
        ("12", 0.0),
        (True, 0.0),
        (-1, 0.0),
        (math.nan, 0.0),
        (math.inf, 0.0),
        ([1], 0.0),
    ],
)
def test_amounts_that_are_not_finite_non_negative_numbers_read_as_zero(
    value: Any, read: float
) -> None:
    assert amount(value) == read
    assert credits_view("amy", "z1", SPEC, {WEEKLY_USED: value}).weekly_used == read


def test_malformed_budgets_are_ignored() -> None:
    spec = {"credits": ["junk", {"zone": "z1", "weekly": "lots"}, {"zone": "z1", "weekly": True}]}
    assert weekly_limit(spec, "z1") is None
