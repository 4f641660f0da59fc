"""The admin guide (shared/seed/run-a-cluster.md) is the contract: its YAML must validate.

The guide is read at test time from the shared folder beside the repository
(``$DORA_SHARED_DIR`` or ``../shared``); a missing guide fails the test instead of
skipping it. ``examples/`` holds copies of the guide's documents (with loopback
addresses instead of the guide's 10.10.10.x), checked to stay equal to the guide.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from dora.model import (
    KINDS,
    DocumentError,
    Resource,
    WorkloadSpec,
    load_paths,
    parse_document,
    read_yaml_documents,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SEED_NAME = "seed/run-a-cluster.md"
FOREIGN_KINDS = {
    "Namespace",
    "Ingress",
    "Service",
    "Deployment",
    "PersistentVolume",
    "PersistentVolumeClaim",
}


def _seed_path() -> Path:
    candidates = []
    if os.environ.get("DORA_SHARED_DIR"):
        candidates.append(Path(os.environ["DORA_SHARED_DIR"]))
    candidates += [REPO / "shared", REPO.parent / "shared"]
    for folder in candidates:
        if (folder / SEED_NAME).is_file():
            return folder / SEED_NAME
    pytest.fail(
        f"the admin guide {SEED_NAME} was not found in {[str(c) for c in candidates]}; "
        "set DORA_SHARED_DIR to the shared folder"
    )


@pytest.fixture(scope="module")
def seed_documents() -> list[tuple[int, dict[str, Any]]]:
    """(block number, document) for every document of every ```yaml block."""
    text = _seed_path().read_text(encoding="utf-8")
    blocks = re.findall(r"^```\s*yaml[^\n]*\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) == 8, "the guide's YAML blocks changed: review this test"
    docs = []
    for number, block in enumerate(blocks, 1):
        for raw in read_yaml_documents(block, f"block {number}"):
            assert not raw.issues, raw.issues
            assert isinstance(raw.data, dict)
            docs.append((number, raw.data))
    return docs


def _is_ours(doc: dict[str, Any]) -> bool:
    return doc.get("apiVersion") == "v1" and doc.get("kind") in KINDS


def test_every_dora_document_of_the_guide_validates(
    seed_documents: list[tuple[int, dict[str, Any]]],
) -> None:
    ours = [parse_document(doc, 0, f"block {n}") for n, doc in seed_documents if _is_ours(doc)]
    assert [(r.kind, r.name) for r in ours] == [
        ("Zone", "dora-cluster-1"),
        ("Storage", "dora.storage.01"),
        ("Role", "node-rep"),
        ("User", "node"),
        ("Node", "node1"),
        ("Node", "node2"),
        ("Role", "user"),
        ("Workspace", "amedeo.setti"),
        ("User", "amedeo.setti"),
        ("Volume", "home"),
        ("Resourcecredit", "Tesla V100-SXM2-16GB"),
    ]
    volume = next(r for r in ours if r.kind == "Volume")
    assert (volume.zone, volume.workspace) == ("dora-cluster-1", "amedeo.setti")


def test_the_guide_kubernetes_manifests_are_recognised_as_foreign(
    seed_documents: list[tuple[int, dict[str, Any]]],
) -> None:
    foreign = [doc for _, doc in seed_documents if not _is_ours(doc)]
    assert len(foreign) == 9
    for doc in foreign:
        assert doc["kind"] in FOREIGN_KINDS
        with pytest.raises(DocumentError) as exc:
            parse_document(doc)
        # Only the envelope is blamed: the rest of a foreign document is not ours to judge.
        assert {i.path for i in exc.value.issues} <= {"apiVersion", "kind"}
        assert any(i.path == "kind" for i in exc.value.issues)


def _from_guide(value: Any) -> Any:
    """The guide's documents as the examples write them: loopback addresses, and the
    euro sign the guide's encoding mangled (â‚¬) repaired."""
    text = json.dumps(value, ensure_ascii=False).replace("10.10.10.", "127.0.0.")
    return json.loads(text.replace("â‚¬", "€"))


def test_examples_are_the_guide_documents(
    seed_documents: list[tuple[int, dict[str, Any]]],
) -> None:
    guide = [
        _from_guide(parse_document(doc).to_document()) for _, doc in seed_documents if _is_ours(doc)
    ]
    examples = [
        r.to_document()
        for r in load_paths([str(EXAMPLES)])
        if not (r.kind == "Workload" and r.name == "hello")
    ]

    def key(doc: dict[str, Any]) -> str:
        return json.dumps(doc, sort_keys=True, ensure_ascii=False)

    assert sorted(map(key, examples)) == sorted(map(key, guide))


def test_examples_never_use_the_guide_private_addresses() -> None:
    for path in EXAMPLES.glob("*.yaml"):
        assert "10.10.10." not in path.read_text(encoding="utf-8"), path


def test_sample_workload_is_a_two_replica_distributed_cpu_job() -> None:
    resources = load_paths([str(EXAMPLES / "workload.yaml")])
    assert len(resources) == 1
    workload: Resource = resources[0]
    spec = workload.spec_as(WorkloadSpec)
    assert spec.replicas() == 2
    assert spec.config.affinity == "Distribute"
    assert not spec.is_gpu_workload()
    assert spec.cpu_request_millicores() == 500
