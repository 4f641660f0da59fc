"""Scalar field types that close the YAML 1.1 traps.

The loader (:mod:`dora.model.loader`) resolves plain scalars like YAML 1.2's core
schema: only ``true``/``false`` are booleans and only decimal integers without a
leading zero are integers, so ``no``, ``on``, ``0755``, ``0x1f`` and ``1_000`` arrive
here as *strings*. A YAML 1.1 reader (PyYAML's default, the original Dora) would
have read them as ``False``, ``True``, 493, 31 and 1000. Rather than guess, the
types below reject those strings where a boolean or a number is expected and say
what to write instead.

Floats read from YAML are :class:`YamlFloat`, which remembers the source text: a
string field given ``1.10`` (a version, a product name) gets ``"1.10"`` back, not
``"1.1"``. Integers are accepted in string fields too (``cmd: [sleep, 3600]``).

Every check raises ``PydanticCustomError("dora", ...)`` whose ``reason`` is the
final, user-facing message; :mod:`dora.model.translate` turns it into an Issue.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar, get_args

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

T = TypeVar("T")

ALL = "All"
"""The wildcard value (any zone, workspace, kind, GPU model, node)."""


class YamlFloat(float):
    """A float read from YAML that keeps the text it was written as."""

    source: str

    def __new__(cls, value: float, source: str) -> YamlFloat:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj

    def __reduce__(self) -> tuple[Any, tuple[float, str]]:
        return (YamlFloat, (float(self), self.source))


FieldPath = str | int | tuple[str | int, ...]


def fail(reason: str, *, field: FieldPath | None = None) -> NoReturn:
    """Raise the validation error carrying ``reason`` verbatim.

    ``field`` appends keys/indexes to the error's location, for checks that run on a
    whole mapping or list but blame one of its members.
    """
    ctx: dict[str, Any] = {"reason": reason}
    if field is not None:
        ctx["path"] = field if isinstance(field, tuple) else (field,)
    raise PydanticCustomError("dora", "{reason}", ctx)


def at(field: str | int, check: Callable[[Any], T], value: Any) -> T:
    """Run ``check(value)``; a failure is reported under ``field`` (prefixed to its path)."""
    try:
        return check(value)
    except PydanticCustomError as exc:
        ctx = exc.context or {}
        inner = tuple(ctx.get("path", ()))
        fail(str(ctx.get("reason", exc.message())), field=(field, *inner))


def describe(value: Any) -> str:
    """Render a value for an error message the way the user would have typed it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YamlFloat):
        return value.source
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# --- text ---------------------------------------------------------------------------


def scalar_text(value: Any, *, allow_empty: bool = False) -> str:
    """The text of a string field: strings as-is, YAML numbers as they were written."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, YamlFloat):
        text = value.source
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, bool):
        fail(f"must be a string (got {describe(value)}); quote it to mean the text")
    elif isinstance(value, float):
        fail(f"must be a string (got {describe(value)}); quote it to keep the exact text")
    else:
        fail(f"must be a string (got {describe(value)})")
    if not text and not allow_empty:
        fail("must not be empty")
    if "\x00" in text:
        fail("must not contain NUL characters")
    return text


def _text(value: Any) -> str:
    return scalar_text(value)


def _text_or_empty(value: Any) -> str:
    return scalar_text(value, allow_empty=True)


Text = Annotated[str, BeforeValidator(_text)]
"""A non-empty string (YAML numbers keep their source text)."""

AnyText = Annotated[str, BeforeValidator(_text_or_empty)]
"""A string that may be empty (environment values)."""

# --- names --------------------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
NAME_MAX = 253
NAME_RULE = (
    "letters, digits, '.', '_' and '-', starting and ending with a letter or digit, "
    f"at most {NAME_MAX} characters"
)


def name_problem(text: str) -> str | None:
    """Why ``text`` is not a valid resource name, or ``None`` when it is."""
    if len(text) > NAME_MAX:
        return f"must be at most {NAME_MAX} characters (got {len(text)})"
    if not NAME_RE.fullmatch(text):
        return f"must be a name: {NAME_RULE} (got {describe(text)})"
    return None


def _name(value: Any) -> str:
    text = scalar_text(value)
    problem = name_problem(text)
    if problem:
        fail(problem)
    return text


def _name_or_all(value: Any) -> str:
    text = scalar_text(value)
    if text == ALL:
        return text
    problem = name_problem(text)
    if problem:
        fail(f"{problem}, or {ALL}")
    return text


Name = Annotated[str, BeforeValidator(_name)]
"""A resource name (zone, workspace, storage, role, ...)."""

NameOrAll = Annotated[str, BeforeValidator(_name_or_all)]
"""A resource name or the ``All`` wildcard."""

# --- integers -----------------------------------------------------------------------

_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")
_HEX = re.compile(r"[-+]?0[xX][0-9a-fA-F]+")
_OCTAL_O = re.compile(r"[-+]?0[oO][0-7]+")
_UNDERSCORE = re.compile(r"[-+]?[0-9][0-9_]*_[0-9_]*")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+")
_DECIMAL = re.compile(r"[-+]?[0-9]+")


def number_text_hint(text: str) -> str | None:
    """Explain a string that a YAML 1.1 reader would have taken for a number."""
    stripped = text.strip()
    sign = "-" if stripped.startswith("-") else ""
    if _LEADING_ZERO.fullmatch(stripped):
        digits = stripped.lstrip("+-").lstrip("0") or "0"
        decimal = f"{sign}{digits}"
        if all(c in "01234567" for c in stripped.lstrip("+-")):
            octal = f"{sign}{int(stripped.lstrip('+-'), 8)}"
            if octal != decimal:
                return f"leading zero: ambiguous in YAML 1.1; write {decimal} or {octal}"
        return f"leading zero: ambiguous in YAML 1.1; write {decimal}"
    if _HEX.fullmatch(stripped):
        return f"hexadecimal is read as text here; write {sign}{int(stripped.lstrip('+-'), 16)}"
    if _OCTAL_O.fullmatch(stripped):
        value = int(stripped.lstrip("+-")[2:], 8)
        return f"octal notation is read as text here; write {sign}{value}"
    if _UNDERSCORE.fullmatch(stripped):
        return f"digit separators are read as text here; write {stripped.replace('_', '')}"
    if _SEXAGESIMAL.fullmatch(stripped):
        total = 0
        for part in stripped.lstrip("+-").split(":"):
            total = total * 60 + int(part.replace("_", ""))
        return f"YAML 1.1 reads {stripped} as base 60 ({sign}{total}); write the number you mean"
    if stripped.startswith("+") and _DECIMAL.fullmatch(stripped):
        return f"write {stripped[1:]} without the plus sign"
    if _DECIMAL.fullmatch(stripped):
        return f"write {stripped} without quotes"
    return None


class IntCheck:
    """Validator for an integer field with optional bounds."""

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def expectation(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"must be an integer between {self.minimum} and {self.maximum}"
        if self.minimum is not None:
            return f"must be an integer >= {self.minimum}"
        if self.maximum is not None:
            return f"must be an integer <= {self.maximum}"
        return "must be an integer"

    def __call__(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                fail(f"{self.expectation()} (got {value})")
            return int(value)
        if isinstance(value, str):
            hint = number_text_hint(value)
            if hint:
                fail(f"{hint} (got {describe(value)})")
        fail(f"{self.expectation()} (got {describe(value)})")


NonNegInt = Annotated[int, BeforeValidator(IntCheck(minimum=0))]
PositiveInt = Annotated[int, BeforeValidator(IntCheck(minimum=1))]
PortNumber = Annotated[int, BeforeValidator(IntCheck(1, 65535))]
Priority = Annotated[int, BeforeValidator(IntCheck(-1_000_000, 1_000_000))]
MAX_REPLICAS = 10_000
"""Replicas of one workload: far above any real gang, low enough that a typo
(``count: 1e9``) cannot make the scheduler create a billion containers."""
MAX_GPUS = 64
"""GPUs per replica: more than any single server has."""
MAX_CPUS = 4096
"""Whole CPUs (or CPUs' worth of millicores) per replica."""
ReplicaCount = Annotated[int, BeforeValidator(IntCheck(0, MAX_REPLICAS))]
GpuCount = Annotated[int, BeforeValidator(IntCheck(0, MAX_GPUS))]

# --- numbers ------------------------------------------------------------------------


class NumberCheck:
    """Validator for a finite number (int or float) with a lower bound."""

    def __init__(self, minimum: float) -> None:
        self.minimum = minimum

    def __call__(self, value: Any) -> int | float:
        expect = f"must be a number >= {self.minimum:g}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            number: int | float = value if isinstance(value, int) else float(value)
            if isinstance(number, float) and not math.isfinite(number):
                fail(f"must be a finite number (got {describe(value)})")
            if number < self.minimum:
                fail(f"{expect} (got {describe(value)})")
            return number
        if isinstance(value, str):
            hint = number_text_hint(value)
            if hint is None and _is_float_text(value):
                hint = f"write {value.strip()} without quotes"
            if hint:
                fail(f"{hint} (got {describe(value)})")
        fail(f"{expect} (got {describe(value)})")


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


NonNegNumber = Annotated[int | float, BeforeValidator(NumberCheck(0))]

# --- booleans -----------------------------------------------------------------------

_YAML11_TRUE = {"yes", "y", "on"}
_YAML11_FALSE = {"no", "n", "off"}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _YAML11_TRUE or low in _YAML11_FALSE:
            meant = "true" if low in _YAML11_TRUE else "false"
            fail(
                f"{describe(value)} is ambiguous (a boolean in YAML 1.1, text in YAML 1.2); "
                f"write {meant}"
            )
        if low in {"true", "false"}:
            fail(f"must be true or false without quotes (got {describe(value)})")
    fail(f"must be true or false (got {describe(value)})")


Bool = Annotated[bool, BeforeValidator(_bool)]

# --- enumerations -------------------------------------------------------------------


class Choice:
    """Validator for a closed set of words, matched ignoring case, stored canonically."""

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values
        self._by_lower = {v.lower(): v for v in values}

    @classmethod
    def of(cls, literal: Any) -> Choice:
        """Build from a ``Literal[...]`` type so the words are written once."""
        return cls(tuple(str(a) for a in get_args(literal)))

    def __call__(self, value: Any) -> str:
        if isinstance(value, str):
            found = self._by_lower.get(value.strip().lower())
            if found is not None:
                return found
        fail(f"must be one of {', '.join(self.values)} (got {describe(value)})")


# --- paths --------------------------------------------------------------------------


def path_problem(text: str, *, absolute: bool) -> str | None:
    """Why ``text`` is not an acceptable container or storage path."""
    if absolute and not text.startswith("/"):
        return f"must be an absolute path starting with / (got {describe(text)})"
    if ".." in text.split("/"):
        return f"must not contain '..' (got {describe(text)})"
    if any(ord(c) < 32 for c in text):
        return "must not contain control characters"
    return None


def _abs_path(value: Any) -> str:
    text = scalar_text(value)
    problem = path_problem(text, absolute=True)
    if problem:
        fail(problem)
    return text


def _sub_path(value: Any) -> str:
    text = scalar_text(value)
    problem = path_problem(text, absolute=False)
    if problem:
        fail(problem)
    return text


AbsPath = Annotated[str, BeforeValidator(_abs_path)]
SubPath = Annotated[str, BeforeValidator(_sub_path)]

# --- URLs and hosts -----------------------------------------------------------------

_URL_RE = re.compile(
    r"""(?P<scheme>https?)://
        (?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)
        (?::(?P<port>[0-9]{1,5}))?
        (?P<path>/\S*)?""",
    re.VERBOSE,
)
_HOST_RE = re.compile(
    r"""\[[0-9A-Fa-f:.]+\]                               # [IPv6]
        |[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+                   # bare IPv6
        |[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?     # host name or IPv4""",
    re.VERBOSE,
)


def _url(value: Any) -> str:
    text = scalar_text(value)
    match = _URL_RE.fullmatch(text)
    if not match or (match["port"] and not 0 < int(match["port"]) < 65536):
        fail(f"must be an http(s) URL like https://host:3001 (got {describe(value)})")
    return text


def _host(value: Any) -> str:
    text = scalar_text(value)
    if not _HOST_RE.fullmatch(text):
        fail(f"must be a host name or IP address, without scheme or path (got {describe(value)})")
    return text


Url = Annotated[str, BeforeValidator(_url)]
Host = Annotated[str, BeforeValidator(_host)]


__all__ = [
    "ALL",
    "AbsPath",
    "AnyText",
    "Bool",
    "Choice",
    "Host",
    "Name",
    "NameOrAll",
    "NonNegInt",
    "NonNegNumber",
    "PortNumber",
    "PositiveInt",
    "Priority",
    "SubPath",
    "Text",
    "Url",
    "YamlFloat",
    "describe",
    "fail",
    "name_problem",
    "scalar_text",
]
