"""The YAML loader: YAML 1.1 traps, duplicate keys, streams, paths, dumping."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dora.model import (
    DocumentError,
    LoadError,
    NodeSpec,
    PathError,
    ResourcecreditSpec,
    WorkloadSpec,
    YamlFloat,
    check_documents,
    check_paths,
    dump_documents,
    load_documents,
    load_paths,
    load_yaml,
    read_yaml_documents,
)

ZONE = "apiVersion: v1\nkind: Zone\nmetadata:\n  name: {name}\n"


def one(text: str) -> Any:
    [data] = load_yaml(textwrap.dedent(text))
    return data


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("null", None),
        ("~", None),
        ("", None),
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        # YAML 1.1 would read all of these as booleans or numbers:
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("0755", "0755"),
        ("0x1f", "0x1f"),
        ("0o17", "0o17"),
        ("1_000", "1_000"),
        ("12:30", "12:30"),
        ("+5", "+5"),
        ("2021-01-01", "2021-01-01"),
    ],
)
def test_plain_scalars_resolve_like_yaml_1_2(written: str, value: Any) -> None:
    data = one(f"v: {written}\n")["v"]
    assert data == value
    assert type(data) is type(value)


@pytest.mark.parametrize("written", ["1.10", "1.5", "1e5", "-0.25", ".5", "1.", "3.0e-7", ".inf"])
def test_floats_remember_their_source_text(written: str) -> None:
    value = one(f"v: {written}\n")["v"]
    assert isinstance(value, YamlFloat)
    assert value.source == written


def test_string_fields_get_exactly_the_text_written() -> None:
    [r] = load_documents(
        "apiVersion: v1\nkind: Resourcecredit\nmetadata:\n  name: 1.10\n"
        "spec:\n  credit: {per: {hour: 1.10}}\n  annotations: {version: 1.10, build: 007}\n"
    )
    assert r.name == "1.10"
    spec = r.spec_as(ResourcecreditSpec)
    assert spec.product_name == "1.10"
    assert spec.annotations == {"version": "1.10", "build": "007"}
    assert spec.credit.per.hour == 1.1
    assert type(spec.credit.per.hour) is float


def test_yaml_1_1_booleans_in_bool_fields_are_errors_that_say_what_to_write() -> None:
    text = ZONE.replace("Zone", "Node").format(name="n1") + (
        "spec:\n  endpoint: https://127.0.0.1:3001\n  schedulingDisabled: {}\n"
    )
    for written, meant in (("no", "false"), ("yes", "true"), ("on", "true"), ("OFF", "false")):
        with pytest.raises(LoadError) as exc:
            load_documents(text.format(written))
        [issue] = exc.value.issues
        assert issue.path == "spec.schedulingDisabled"
        assert issue.message.endswith(f"write {meant}")
    [node] = load_documents(text.format("true"))
    assert node.spec_as(NodeSpec).schedulingDisabled is True


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("0755", "leading zero: ambiguous in YAML 1.1; write 755 or 493"),
        ("0089", "leading zero: ambiguous in YAML 1.1; write 89"),
        ("0x1f", "hexadecimal is read as text here; write 31"),
        ("1_000", "digit separators are read as text here; write 1000"),
        ("1:30", "YAML 1.1 reads 1:30 as base 60 (90)"),
        ("+3", "write 3 without the plus sign"),
    ],
)
def test_ambiguous_numbers_in_int_fields_are_errors(written: str, hint: str) -> None:
    text = (
        "apiVersion: v1\nkind: Workload\nmetadata: {name: a}\n"
        f"spec:\n  image: {{image: busybox}}\n  replica:\n    count: {written}\n"
    )
    with pytest.raises(LoadError) as exc:
        load_documents(text, "job.yaml")
    [issue] = exc.value.issues
    assert issue.path == "spec.replica.count"
    assert issue.message.startswith(hint)
    assert issue.line == 7


def test_duplicate_keys_are_errors_with_path_and_line() -> None:
    text = "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 2\n"
    [doc] = read_yaml_documents(text, "x.yaml")
    assert [(i.path, i.message, i.line) for i in doc.issues] == [
        ("b.c", "duplicate key 'c' (first at line 3)", 5),
        ("a", "duplicate key 'a' (first at line 1)", 6),
    ]
    with pytest.raises(LoadError):
        load_yaml(text)


def test_merge_keys_and_anchors_still_work() -> None:
    data = one(
        """
        base: &base {image: busybox, pullPolicy: Always}
        img:
          <<: *base
          pullPolicy: Never
        """
    )
    assert data["img"] == {"image": "busybox", "pullPolicy": "Never"}


def test_alias_bombs_and_recursive_aliases_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    [doc] = read_yaml_documents("\n".join(lines) + "\n")
    assert doc.issues[0].message.startswith("too large")
    [doc] = read_yaml_documents("a: &a [*a]\n")
    assert "nested more than" in doc.issues[0].message


def test_empty_documents_are_skipped_but_keep_their_number() -> None:
    text = (
        "---\n"
        + ZONE.format(name="z1")
        + "---\n---\n# only a comment\n---\n"
        + ZONE.format(name="z 4")
    )
    results = check_documents(text, "s.yaml")
    assert [r.index for r in results] == [1, 4]
    assert results[0].ok and not results[1].ok
    assert str(results[1].issues[0]).startswith("s.yaml doc 4: metadata.name: must be a name")
    assert results[1].issues[0].line == 13


def test_load_documents_reports_every_bad_document_at_once() -> None:
    text = ZONE.format(name="bad name") + "---\n" + ZONE.format(name="ok") + "---\nkind: Zone\n"
    with pytest.raises(LoadError) as exc:
        load_documents(text, "z.yaml")
    assert [(i.doc_index, i.path) for i in exc.value.issues] == [
        (1, "metadata.name"),
        (3, "apiVersion"),
        (3, "metadata"),
    ]
    assert isinstance(exc.value, DocumentError)


def test_syntax_error_reports_line_and_column_and_keeps_earlier_documents() -> None:
    text = ZONE.format(name="z1") + "---\napiVersion: v1\nkind: [Zone\n"
    results = check_documents(text, "z.yaml")
    assert results[0].ok
    [issue] = results[1].issues
    assert results[1].index == 2
    assert issue.message.startswith("invalid YAML at line 8, column 1:")
    assert issue.line == 8


def test_constructor_errors_do_not_stop_later_documents() -> None:
    text = "a: !!binary aGk=\n---\n" + ZONE.format(name="z2")
    results = check_documents(text)
    assert [r.ok for r in results] == [False, True]


def test_json_text_goes_through_the_same_loader() -> None:
    body = (
        '{"apiVersion": "v1", "kind": "Workload", "metadata": {"name": "a"},'
        ' "spec": {"image": {"image": "busybox:1.10"}, "replica": {"count": 0}}}'
    )
    [r] = load_documents(body, "api")
    spec = r.spec_as(WorkloadSpec)
    assert spec.replicas() == 0
    with pytest.raises(LoadError, match="duplicate key 'kind'"):
        load_documents('{"kind": "Zone", "kind": "Node"}')


def test_dumped_documents_load_back_equal_even_with_tricky_strings() -> None:
    text = (
        "apiVersion: v1\nkind: Workload\nmetadata: {name: a}\n"
        "spec:\n  image: {image: busybox}\n"
        "  config:\n    cmd: ['yes', 'no', '0755', 1.10, '1e5', '', 'null', '12:30']\n"
        "    env: {A: 'on', B: '~'}\n"
        "meta: {x: 1e5, y: '1e5', z: [true, 'true', null]}\n"
    )
    resources = load_documents(text)
    dumped = dump_documents(resources)
    assert load_documents(dumped) == resources
    assert resources[0].meta == {"x": 100000.0, "y": "1e5", "z": [True, "true", None]}


# --- paths --------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_directories_are_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", ZONE.format(name="b"))
    write(tmp_path / "a.yml", ZONE.format(name="a"))
    write(tmp_path / "sub" / "c.yaml", ZONE.format(name="c"))
    write(tmp_path / "notes.txt", "not yaml")
    write(tmp_path / ".hidden" / "d.yaml", ZONE.format(name="d"))
    assert [r.name for r in load_paths([str(tmp_path)])] == ["a", "b", "c"]


def test_stdin_and_sources(tmp_path: Path) -> None:
    report = check_paths(["-"], stdin=io.StringIO(ZONE.format(name="bad name")))
    [result] = report.results
    assert result.source == "<stdin>"
    assert str(result.issues[0]).startswith("<stdin> doc 1: metadata.name")
    assert [r.name for r in load_paths(["-"], stdin=io.StringIO(ZONE.format(name="z")))] == ["z"]


def test_unreadable_paths_are_reported_separately(tmp_path: Path) -> None:
    good = write(tmp_path / "z.yaml", ZONE.format(name="z"))
    (tmp_path / "empty").mkdir()
    report = check_paths([str(good), str(tmp_path / "missing.yaml"), str(tmp_path / "empty")])
    assert [r.ok for r in report.results] == [True]
    assert [e.reason for e in report.unreadable] == [
        "no such file or directory",
        "no *.yaml or *.yml files in this directory",
    ]
    assert not report.ok
    with pytest.raises(PathError):
        load_paths([str(tmp_path / "missing.yaml")])


def test_non_utf8_file_is_an_invalid_document(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    [result] = check_paths([str(path)]).results
    assert "not UTF-8" in result.issues[0].message
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + ZONE.format(name="z").encode())
    assert [r.name for r in load_paths([str(bom)])] == ["z"]
