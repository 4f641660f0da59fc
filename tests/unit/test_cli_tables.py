"""`dora get` table rendering and the golden-file normalisation, in-process."""

from __future__ import annotations

import re

import pytest

from dora.cli.tables import COLUMNS, WIDE_EXTRA, age, align, last_seen, render
from dora.model import KINDS

NOW = 1_800_000_000.0


def table_rows(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if set(line) != {"-"}]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (86399, "23h"),
        (86400, "1d"),
    ],
)
def test_age(seconds: int, text: str) -> None:
    assert age(NOW - seconds, NOW) == text


def test_age_of_nothing_or_the_future() -> None:
    assert age(None, NOW) == "-"
    assert age(NOW + 30, NOW) == "0s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "now"),
        (20, "now"),
        (21, "21s ago"),
        (120, "120s ago"),
        (121, "2m ago"),
        (3600, "60m ago"),
        (3601, "1h ago"),
        (86399, "23h ago"),
        (86400, "1d ago"),
    ],
)
def test_last_seen_follows_the_original_wording(seconds: int, text: str) -> None:
    assert last_seen(NOW - seconds, NOW) == text


def test_every_kind_has_its_own_columns_and_wide_headers_are_unique() -> None:
    assert set(COLUMNS) == set(KINDS)
    for kind, columns in COLUMNS.items():
        headers = [h for h, _ in [*columns, *WIDE_EXTRA]]
        assert len(headers) == len(set(headers)), kind


def _node(name: str, **observed: object) -> dict[str, object]:
    return {
        "kind": "Node",
        "name": name,
        "zone": "z1",
        "workspace": "",
        "spec": {"endpoint": "https://127.0.0.5:3001", "allow": ["GPUWorkload"]},
        "desired": "run",
        "status": "READY" if observed else "NOT_READY",
        "observed": observed or None,
        "version": 3,
        "uid": "0123456789abcdef",
        "owner": "admin",
        "created_at": NOW - 90,
    }


def test_node_table_is_the_guides() -> None:
    gpus = [{"product_name": "A"}, {"product_name": "A"}, {"product_name": "B"}]
    rows = [
        _node("n1", cpu_count=56, cpu_model="Xeon", gpus=gpus, last_seen=NOW - 5, version="0.9"),
        _node("n2"),
    ]
    text = render("Node", rows, NOW)
    assert text.splitlines()[1] == "-" * len(text.splitlines()[0])
    assert table_rows(text) == [
        [
            "kind",
            "zone",
            "name",
            "endpoint",
            "cpu",
            "gpu",
            "lastSeen",
            "desired",
            "status",
            "version",
        ],
        [
            "node",
            "z1",
            "n1",
            "https://127.0.0.5:3001",
            "56xXeon",
            "2xA,1xB",
            "now",
            "run",
            "READY",
            "0.9",
        ],
        ["node", "z1", "n2", "https://127.0.0.5:3001", "-", "-", "-", "run", "NOT_READY", "-"],
    ]
    wide = table_rows(render("Node", rows, NOW, wide=True))
    assert wide[0][-3:] == ["owner", "revision", "uid"]
    assert wide[1][-3:] == ["admin", "3", "01234567"]


def test_an_empty_listing_is_the_header_and_rule() -> None:
    assert render("Zone", [], NOW) == "kind  name  desired  age\n------------------------"


def test_workload_state_carries_the_pending_reason() -> None:
    row = {
        "kind": "Workload",
        "name": "big",
        "zone": "z1",
        "workspace": "w",
        "spec": {
            "replica": {"count": 2},
            "image": {"image": "img"},
            "selectors": {"gpu": {"count": 8}},
        },
        "desired": "run",
        "status": "Pending",
        "computed": {"running": 1, "reason": "0/3 nodes fit: 3 NOT_READY"},
        "created_at": NOW - 7200,
    }
    cells = table_rows(render("Workload", [row], NOW))[1]
    assert cells[5:] == ["img", "8", "1/2", "2h", "Pending: 0/3 nodes fit: 3 NOT_READY"]


def test_align_pads_to_the_widest_cell() -> None:
    assert align(["a", "bb"], [["xxx", "y"]]) == "a    bb\n-------\nxxx  y"
