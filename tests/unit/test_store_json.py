"""The stores' JSON encoder (`dora.store.common.dumps`): compact, UTF-8 as is, the
same values as the stdlib's encoder, and the same refusals."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest

from dora.store.common import dumps


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, "é", None, True], "b": {"c": {}}},
        {"big": 2**64, "small": -(2**70)},  # beyond orjson: the stdlib encodes them
        {1: "int key", "2": "str key"},  # non-string keys: the stdlib's conversion
        [0.1, 1e-07, 1e16, 5e-324, 1.7976931348623157e308],
        'line\u2028separator and "quotes" and \\ backslash',
    ],
)
def test_dumps_gives_the_stdlib_values(value: Any) -> None:
    text = dumps(value)
    assert isinstance(text, str)
    assert json.loads(text) == json.loads(json.dumps(value))


def test_dumps_is_compact_and_writes_non_ascii_as_is() -> None:
    assert dumps({"city": "Zürich", "gpus": [0, 1]}) == '{"city":"Zürich","gpus":[0,1]}'


def test_dumps_writes_non_finite_floats_as_null() -> None:
    assert dumps([float("nan"), float("inf"), -float("inf")]) == "[null,null,null]"


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value", [datetime.datetime(2026, 1, 1), Point(1), {1, 2}, object(), b"bytes"]
)
def test_dumps_refuses_what_is_not_json(value: Any) -> None:
    # As the stdlib encoder does: a record part that is not plain JSON data is a bug
    # in the caller, not something to store in some chosen spelling.
    with pytest.raises(TypeError):
        dumps({"part": value})
