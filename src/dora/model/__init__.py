"""Dora's resource model: kinds, strict spec models, document parsing, YAML loading.

Everything that turns user text (YAML files, JSON bodies) into resources goes
through this package, so the CLI, the API server and the tests agree on what a
document means::

    from dora.model import load_documents, check_documents, parse_document

    resources = load_documents(text, "job.yaml")      # all or nothing (LoadError)
    results = check_documents(text, "job.yaml")       # per document: ok or issues
    resource = parse_document(json_body, 0, "api")    # one mapping from JSON

Decisions worth knowing (see each module for the why):

* Strict everywhere: unknown fields are errors, nothing is coerced except numbers
  written into string fields (``cmd: [sleep, 3600]``, ``name: 1.10`` keeps "1.10").
* YAML scalars resolve like YAML 1.2 (``no``, ``on``, ``0755`` are strings), and the
  bool and int fields reject those strings with a hint, instead of guessing.
* ``metadata.group`` and ``metadata.workspace`` are synonyms; the canonical form
  (``Resource.to_document``) writes ``workspace``. Same for ``group`` in workload
  volume entries.
* Defaults are filled at parse time, so a stored spec says everything: Workload
  replica 1, driver Docker, priority 0, pullPolicy IfNotPresent, affinity First,
  restartPolicy Never, network none, volume target ``/<name>``; Storage kind NFS;
  Volume policy rw; Node allow both workload types, schedulingDisabled false.
* A Workload that selects neither CPU nor GPU gets one whole CPU.
"""

from __future__ import annotations

from dora.model.document import DocumentResult, check_objects, load_objects, parse_document
from dora.model.errors import DocumentError, Issue, LoadError, PathError, UnknownKindError
from dora.model.kinds import KINDS, PSEUDO_KINDS, KindInfo, resolve_kind
from dora.model.loader import (
    DoraLoader,
    check_documents,
    dump_documents,
    dump_yaml,
    load_documents,
    load_yaml,
    read_yaml_documents,
)
from dora.model.names import container_name, resource_name_problem, split_container_name
from dora.model.paths import PathsReport, check_paths, expand_path, load_paths
from dora.model.resource import API_VERSION, Resource, container_for
from dora.model.scalars import ALL, YamlFloat
from dora.model.specs import (
    ADMIN_ONLY_KEYS,
    LOCAL_STORAGE,
    PERMISSION_KINDS,
    SPEC_MODELS,
    VERBS,
    Config,
    CpuSelector,
    EmptySpec,
    GpuSelector,
    Image,
    Network,
    NodeSelector,
    NodeSpec,
    Port,
    Replica,
    ResourcecreditSpec,
    RoleSpec,
    Selectors,
    Spec,
    StorageSpec,
    UserCredit,
    UsercreditSpec,
    UserDefault,
    UserResource,
    UserSpec,
    VolumeMount,
    VolumeSpec,
    WorkloadSpec,
    WorkspaceSpec,
    ZoneSpec,
    duration_seconds,
    normalize_verb,
    parse_size,
)
from dora.model.translate import format_path

__all__ = [
    "ADMIN_ONLY_KEYS",
    "ALL",
    "API_VERSION",
    "KINDS",
    "LOCAL_STORAGE",
    "PERMISSION_KINDS",
    "PSEUDO_KINDS",
    "SPEC_MODELS",
    "VERBS",
    "Config",
    "CpuSelector",
    "DocumentError",
    "DocumentResult",
    "DoraLoader",
    "EmptySpec",
    "GpuSelector",
    "Image",
    "Issue",
    "KindInfo",
    "LoadError",
    "Network",
    "NodeSelector",
    "NodeSpec",
    "PathError",
    "PathsReport",
    "Port",
    "Replica",
    "Resource",
    "ResourcecreditSpec",
    "RoleSpec",
    "Selectors",
    "Spec",
    "StorageSpec",
    "UnknownKindError",
    "UserCredit",
    "UserDefault",
    "UserResource",
    "UserSpec",
    "UsercreditSpec",
    "VolumeMount",
    "VolumeSpec",
    "WorkloadSpec",
    "WorkspaceSpec",
    "YamlFloat",
    "ZoneSpec",
    "check_documents",
    "check_objects",
    "check_paths",
    "container_for",
    "container_name",
    "dump_documents",
    "dump_yaml",
    "duration_seconds",
    "expand_path",
    "format_path",
    "load_documents",
    "load_objects",
    "load_paths",
    "load_yaml",
    "normalize_verb",
    "parse_document",
    "parse_size",
    "read_yaml_documents",
    "resolve_kind",
    "resource_name_problem",
    "split_container_name",
]
