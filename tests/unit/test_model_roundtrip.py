"""Property tests: valid documents survive ``to_document`` and YAML dump + load unchanged,
and no input makes the parser fail with anything but a DocumentError."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dora.model import (
    DocumentError,
    Resource,
    check_documents,
    dump_documents,
    dump_yaml,
    load_documents,
    parse_document,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Strings a YAML 1.1 reader would not read back as the same string: the dumper must quote them.
TRAPS = [
    "yes",
    "no",
    "on",
    "Off",
    "y",
    "0755",
    "0x1f",
    "1_000",
    "12:30",
    "1.10",
    "1e5",
    "null",
    "~",
    "true",
    "-",
    "+5",
    "2021-01-01",
]

names = st.from_regex(r"[a-z0-9](?:[a-z0-9._-]{0,12}[a-z0-9])?", fullmatch=True)
plain_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cf", "Zl", "Zp")),
    min_size=1,
    max_size=16,
)
texts = st.one_of(plain_text, st.sampled_from(TRAPS))
maybe_empty_texts = st.one_of(st.just(""), texts)
numbers = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False, allow_infinity=False))
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**9), 10**9),
        st.floats(allow_nan=False, allow_infinity=False),
        texts,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(texts, children, max_size=3)
    ),
    max_leaves=8,
)


def envelope(
    draw: st.DrawFn, kind: str, spec: dict[str, Any], *, zoned: bool, workspaced: bool
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": draw(names)}
    if zoned and draw(st.booleans()):
        metadata["zone"] = draw(names)
    if workspaced and draw(st.booleans()):
        metadata[draw(st.sampled_from(["group", "workspace"]))] = draw(names)
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": metadata, "spec": spec}
    if draw(st.booleans()):
        doc["meta"] = draw(st.dictionaries(texts, json_values, max_size=3))
    return doc


def optional(
    draw: st.DrawFn, target: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]
) -> None:
    if draw(st.booleans()):
        target[key] = draw(strategy)


product_names = st.one_of(st.just("All"), texts, st.lists(texts, min_size=1, max_size=3))


@st.composite
def workloads(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": {"image": draw(st.from_regex(r"[a-z0-9./:_-]{1,30}", fullmatch=True))}
    }
    optional(
        draw, spec["image"], "pullPolicy", st.sampled_from(["Always", "IfNotPresent", "Never"])
    )
    optional(draw, spec, "replica", st.fixed_dictionaries({"count": st.integers(0, 100)}))
    optional(draw, spec, "driver", st.just("Docker"))
    optional(draw, spec, "priority", st.integers(-1000, 1000))
    selectors: dict[str, Any] = {}
    optional(
        draw,
        selectors,
        "cpu",
        st.fixed_dictionaries(
            {},
            optional={
                "product_name": product_names,
                "count": st.one_of(
                    st.integers(1, 128), st.integers(1, 64000).map(lambda n: f"{n}m")
                ),
            },
        ),
    )
    optional(
        draw,
        selectors,
        "gpu",
        st.fixed_dictionaries(
            {}, optional={"product_name": product_names, "count": st.integers(0, 8)}
        ),
    )
    optional(
        draw, selectors, "node", st.fixed_dictionaries({"name": st.one_of(names, st.just("All"))})
    )
    optional(draw, spec, "selectors", st.just(selectors))
    config: dict[str, Any] = {}
    optional(
        draw, config, "cmd", st.one_of(texts, st.lists(maybe_empty_texts, min_size=1, max_size=4))
    )
    env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
    optional(
        draw,
        config,
        "env",
        st.one_of(
            st.dictionaries(env_names, maybe_empty_texts, max_size=3),
            st.dictionaries(env_names, maybe_empty_texts, max_size=3).map(
                lambda d: [f"{k}={v}" for k, v in d.items()]
            ),
        ),
    )
    optional(draw, config, "affinity", st.sampled_from(["First", "Random", "Distribute", "Fill"]))
    optional(draw, config, "restartPolicy", st.sampled_from(["Never", "Always", "OnFailure"]))
    optional(
        draw,
        config,
        "shmSize",
        st.one_of(st.integers(1, 2**40), st.integers(1, 4096).map(lambda n: f"{n}m")),
    )
    optional(
        draw,
        config,
        "maxRunTime",
        st.one_of(
            st.integers(1, 10**6),
            st.tuples(st.integers(1, 999), st.sampled_from("smhd")).map(lambda t: f"{t[0]}{t[1]}"),
        ),
    )
    optional(draw, spec, "config", st.just(config))
    mounts = []
    for name in draw(st.lists(names, unique=True, max_size=3)):
        mount: dict[str, Any] = {"name": name}
        optional(draw, mount, draw(st.sampled_from(["group", "workspace"])), names)
        optional(draw, mount, "subpath", st.from_regex(r"[a-z0-9/]{1,10}", fullmatch=True))
        optional(draw, mount, "readOnly", st.booleans())
        mounts.append(mount)
    optional(draw, spec, "volumes", st.just(mounts))
    if draw(st.booleans()):
        ports = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"port": st.integers(1, 65535)},
                    optional={
                        "protocol": st.sampled_from(["tcp", "udp"]),
                        "nodePort": st.integers(1, 65535),
                        "name": names,
                        "kind": st.just("NodePort"),
                    },
                ),
                max_size=3,
                unique_by=lambda p: (p["port"], p.get("protocol", "tcp")),
            )
        )
        spec["network"] = {"mode": "bridge", "ports": ports}
    return envelope(draw, "Workload", spec, zoned=True, workspaced=True)


@st.composite
def nodes(draw: st.DrawFn) -> dict[str, Any]:
    host = draw(st.one_of(names, st.from_regex(r"127\.0\.0\.[0-9]{1,2}", fullmatch=True)))
    spec: dict[str, Any] = {"endpoint": f"https://{host}:{draw(st.integers(1, 65535))}"}
    optional(
        draw, spec, "allow", st.lists(st.sampled_from(["CPUWorkload", "GPUWorkload"]), unique=True)
    )
    optional(draw, spec, "schedulingDisabled", st.booleans())
    return envelope(draw, "Node", spec, zoned=True, workspaced=False)


kinds_or_all = st.sampled_from(
    ["All", "Workload", "Container", "Volume", "Node", "Token", "Project"]
)


@st.composite
def users(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    optional(
        draw,
        spec,
        "default",
        st.fixed_dictionaries({}, optional={"workspace": names, "zone": names}),
    )
    entry = st.fixed_dictionaries(
        {
            "kind": kinds_or_all,
            "zone": st.one_of(st.just("All"), names),
            "workspace": st.one_of(st.just("All"), names),
            "role": names,
        }
    )
    optional(draw, spec, "resources", st.lists(entry, max_size=3))
    zones = draw(st.lists(names, unique=True, max_size=3))
    spec["credits"] = [{"zone": z, "weekly": draw(numbers)} for z in zones]
    return envelope(draw, "User", spec, zoned=False, workspaced=False)


@st.composite
def roles(draw: st.DrawFn) -> dict[str, Any]:
    verbs = st.sampled_from(
        ["Apply", "get", "GETONE", "Describe", "report", "Shell", "Token", "Ls"]
    )
    permission = draw(st.dictionaries(kinds_or_all, st.lists(verbs, max_size=4), max_size=4))
    return envelope(draw, "Role", {"permission": permission}, zoned=False, workspaced=False)


@st.composite
def volumes(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"storage": draw(st.one_of(names, st.just("Local")))}
    optional(draw, spec, "localPath", st.from_regex(r"/[a-z0-9/]{0,12}", fullmatch=True))
    optional(draw, spec, "policy", st.sampled_from(["rw", "readonly"]))
    return envelope(draw, "Volume", spec, zoned=True, workspaced=True)


documents = st.one_of(workloads(), nodes(), users(), roles(), volumes())


@SETTINGS
@given(documents)
def test_parse_to_document_round_trip(doc: dict[str, Any]) -> None:
    resource = parse_document(doc)
    again = parse_document(resource.to_document())
    assert again == resource
    assert again.to_document() == resource.to_document()


@SETTINGS
@given(documents)
def test_yaml_dump_and_load_round_trip(doc: dict[str, Any]) -> None:
    resource = parse_document(doc)
    assert load_documents(dump_documents([resource])) == [resource]
    # The document as a user would have written it reads the same as the parsed one.
    assert load_documents(dump_yaml(doc)) == [resource]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_results_never_exceptions(text: str) -> None:
    for result in check_documents(text, "fuzz"):
        assert result.ok == (result.resource is not None)
        assert all(i.source == "fuzz" for i in result.issues)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "apiVersion": st.just("v1"),
                "kind": st.sampled_from(["Workload", "Node", "User", "Role", "Zone"]),
            },
            optional={"metadata": json_values, "spec": json_values, "meta": json_values},
        ),
    )
)
def test_any_object_parses_or_raises_document_error(obj: Any) -> None:
    try:
        resource = parse_document(obj)
    except DocumentError as exc:
        assert exc.issues
    else:
        assert isinstance(resource, Resource)
