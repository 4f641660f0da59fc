"""Reading YAML safely: YAML-1.2-like scalars, no duplicate keys, bounded size.

PyYAML's default resolver implements YAML 1.1, where ``no`` is false, ``0755`` is
493 and ``12:30`` is 750. A manifest author who writes ``schedulingDisabled: no`` or
``count: 0755`` should get an error, not a silent surprise, so :class:`DoraLoader`
resolves plain scalars like YAML 1.2's core schema:

* booleans: ``true``/``false`` (any of the three YAML casings) only;
* null: ``null``/``Null``/``NULL``/``~``/empty;
* integers: decimal, no leading zero, optional ``-``;
* floats: decimal with a ``.`` or an exponent, ``.inf``/``.nan``;
* everything else is a string (the field types then explain what to write).

Floats are :class:`~dora.model.scalars.YamlFloat`, which keeps the source text, so
a string field given ``1.10`` reads ``"1.10"``. Duplicate keys in one mapping are an
error with the key's path (YAML forbids them; PyYAML silently keeps the last one).
Timestamps, binary, sets and custom tags are refused: documents are JSON data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dora.model.document import DocumentResult, parse_document, resources_or_raise
from dora.model.errors import DocumentError, Issue, LoadError
from dora.model.resource import Resource
from dora.model.scalars import YamlFloat
from dora.model.translate import Loc, format_path

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

MAX_VALUES = 100_000
"""Most values (after alias expansion) one document may hold: stops alias bombs."""
MAX_DEPTH = 100
"""Deepest nesting accepted; manifests are a few levels deep."""

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"

_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9]+[eE][-+]?[0-9]+
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)
_RESOLVERS: list[tuple[str, re.Pattern[str], list[str]]] = [
    (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")),
    (_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    (_INT, re.compile(r"^-?(?:0|[1-9][0-9]*)$"), list("-0123456789")),
    (_FLOAT, _FLOAT_RE, list("-+0123456789.")),
    (_MERGE, re.compile(r"^(?:<<)$"), ["<"]),
]


class DoraLoader(_BaseLoader):
    """PyYAML safe loader (libyaml when available) with YAML-1.2-like scalars."""

    def construct_yaml_bool(self, node: Node) -> bool:
        value = str(self.construct_scalar(node))  # type: ignore[arg-type]
        if value.lower() not in {"true", "false"}:
            raise ConstructorError(
                None, None, f"!!bool takes true or false, not {value!r}", node.start_mark
            )
        return value.lower() == "true"

    def construct_yaml_float(self, node: Node) -> float:
        text = str(self.construct_scalar(node))  # type: ignore[arg-type]
        special = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}
        try:
            value = float(special.get(text.lower(), text))
        except ValueError:
            raise ConstructorError(None, None, f"not a number: {text!r}", node.start_mark) from None
        return YamlFloat(value, text)


DoraLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in _RESOLVERS:
    DoraLoader.add_implicit_resolver(_tag, _regexp, _first)

_KEPT = {_NULL, _BOOL, _INT, _FLOAT, _STR, "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map", None}
DoraLoader.yaml_constructors = {
    tag: fn for tag, fn in SafeConstructor.yaml_constructors.items() if tag in _KEPT
}
DoraLoader.add_constructor(_BOOL, DoraLoader.construct_yaml_bool)
DoraLoader.add_constructor(_FLOAT, DoraLoader.construct_yaml_float)


class DoraDumper(yaml.SafeDumper):
    """Safe dumper that quotes every string DoraLoader (or a YAML 1.1 reader) would
    not read back as a string, so dumped documents load back unchanged anywhere."""


for _tag, _regexp, _first in _RESOLVERS:
    DoraDumper.add_implicit_resolver(_tag, _regexp, _first)
DoraDumper.add_representer(YamlFloat, lambda dumper, data: dumper.represent_float(float(data)))


def dump_yaml(data: Any) -> str:
    """Block-style YAML of plain data, key order kept, unicode as-is."""
    return yaml.dump(data, Dumper=DoraDumper, sort_keys=False, allow_unicode=True)


def dump_documents(resources: Iterable[Resource]) -> str:
    """A multi-document YAML stream of canonical documents (``---`` before each)."""
    return "".join("---\n" + dump_yaml(r.to_document()) for r in resources)


@dataclass
class RawDocument:
    """One non-empty YAML document before validation."""

    index: int
    data: Any = None
    lines: dict[Loc, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)


def read_yaml_documents(text: str, source: str | None = None) -> list[RawDocument]:
    """Split a YAML stream into documents (1-based ``index``; empty ones skipped).

    A syntax error ends the stream: it is reported on the document where it
    occurs and later documents are not read (the parser cannot resynchronise).
    """
    docs: list[RawDocument] = []
    loader = DoraLoader(text)
    index = 0
    try:
        while True:
            try:
                node = loader.get_node() if loader.check_node() else None
                if node is None:
                    break
            except yaml.YAMLError as exc:
                docs.append(RawDocument(index + 1, issues=[_yaml_issue(exc, index + 1, source)]))
                break
            except RecursionError:  # pragma: no cover - pure-Python parser only
                docs.append(
                    RawDocument(
                        index + 1, issues=[Issue(index + 1, source, "", "nested too deeply")]
                    )
                )
                break
            index += 1
            doc = RawDocument(index)
            _inspect(node, doc, source)
            doc.issues.sort(key=lambda i: i.line or 0)
            if not doc.issues:
                try:
                    doc.data = loader.construct_document(node)
                except yaml.YAMLError as exc:
                    _reset(loader)
                    doc.issues.append(_yaml_issue(exc, index, source))
            if doc.issues or doc.data is not None:
                docs.append(doc)
    finally:
        loader.dispose()
    return docs


def check_documents(text: str, source: str | None = None) -> list[DocumentResult]:
    """Validate every document of a YAML (or JSON) text; one result per non-empty document.

    For ``dora apply``: apply the results that are ``ok``, report the others.
    """
    results: list[DocumentResult] = []
    for raw in read_yaml_documents(text, source):
        if raw.issues:
            results.append(DocumentResult(raw.index, source, None, tuple(raw.issues)))
            continue
        try:
            resource = parse_document(raw.data, raw.index - 1, source, lines=raw.lines)
        except DocumentError as exc:
            results.append(DocumentResult(raw.index, source, None, tuple(exc.issues)))
        else:
            results.append(DocumentResult(raw.index, source, resource))
    return results


def load_documents(text: str, source: str | None = None) -> list[Resource]:
    """All resources of a YAML text, or :class:`~dora.model.errors.LoadError` listing
    the issues of *every* invalid document."""
    return resources_or_raise(check_documents(text, source))


def load_yaml(text: str, source: str | None = None) -> list[Any]:
    """The plain data of every non-empty document (for files that are not resources).

    Raises :class:`~dora.model.errors.LoadError` on syntax errors or duplicate keys.
    """
    docs = read_yaml_documents(text, source)
    issues = [i for d in docs for i in d.issues]
    if issues:
        raise LoadError(issues)
    return [d.data for d in docs]


# --- internals ----------------------------------------------------------------------


def _yaml_issue(exc: yaml.YAMLError, index: int, source: str | None) -> Issue:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, ConstructorError) and mark is not None:
        tag = _UNDEFINED_TAG.search(str(problem))
        if tag:
            problem = f"unsupported tag {tag[1]}: documents hold plain data (JSON types)"
        return Issue(index, source, "", f"{problem} (line {mark.line + 1})", mark.line + 1)
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return Issue(index, source, "", f"invalid YAML at {where}: {problem}", mark.line + 1)
    return Issue(index, source, "", f"invalid YAML: {problem}")


_UNDEFINED_TAG = re.compile(r"could not determine a constructor for the tag '([^']*)'")


def _reset(loader: DoraLoader) -> None:
    # construct_document leaves state behind when it raises; clear it so the next
    # document of the stream starts clean.
    loader.constructed_objects = {}
    loader.recursive_objects = {}
    loader.state_generators = []
    loader.deep_construct = False


def _inspect(root: Node, doc: RawDocument, source: str | None) -> None:
    """Walk the node tree: record lines, find duplicate and non-string keys, bound size."""
    stack: list[tuple[Node, Loc]] = [(root, ())]
    visits = 0
    reported: set[int] = set()

    def issue(loc: Loc, node: Node, message: str) -> None:
        line = node.start_mark.line + 1
        doc.issues.append(Issue(doc.index, source, format_path(loc), message, line))

    while stack:
        node, loc = stack.pop()
        visits += 1
        if visits > MAX_VALUES:
            issue((), root, f"too large: more than {MAX_VALUES} values (after expanding aliases)")
            return
        if len(loc) > MAX_DEPTH:
            issue(loc[:5], node, f"nested more than {MAX_DEPTH} levels deep (a recursive alias?)")
            return
        doc.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, SequenceNode):
            stack.extend((child, (*loc, i)) for i, child in reversed(list(enumerate(node.value))))
        elif isinstance(node, MappingNode):
            children: list[tuple[Node, Loc]] = []
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    children.append((value_node, loc))
                    continue
                if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                    if id(key_node) not in reported:
                        reported.add(id(key_node))
                        shown = (str(key_node.value),) if isinstance(key_node, ScalarNode) else ()
                        issue(
                            (*loc, *shown),
                            key_node,
                            "mapping keys must be strings; quote the key",
                        )
                    continue
                key = str(key_node.value)
                if key in seen and id(key_node) not in reported:
                    reported.add(id(key_node))
                    issue(
                        (*loc, key),
                        key_node,
                        f"duplicate key {key!r} (first at line {seen[key]})",
                    )
                seen.setdefault(key, key_node.start_mark.line + 1)
                children.append((value_node, (*loc, key)))
            stack.extend(reversed(children))
