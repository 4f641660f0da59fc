"""Wire models of the HTTP API (requests and replies), shared by the server and the
Python client. Resource documents themselves are validated by `dora.model`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ApplyStatus = Literal["created", "updated", "scaled", "unchanged"]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(Wire):
    code: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] | None = None


class ResourceOut(Wire):
    """One stored resource with its four parts and bookkeeping."""

    kind: str
    name: str
    zone: str
    workspace: str
    spec: dict[str, Any]
    meta: dict[str, Any] = Field(default_factory=dict)
    desired: str
    computed: dict[str, Any] | None = None
    observed: dict[str, Any] | None = None
    status: str | None = None
    """Derived, human status (e.g. READY / NOT_READY for nodes)."""
    version: int
    uid: str
    owner: str
    node: str = ""
    parent: str = ""
    created_at: float
    updated_at: float


class ResourceList(Wire):
    items: list[ResourceOut]


class ApplyResult(Wire):
    status: ApplyStatus
    kind: str
    name: str
    zone: str
    workspace: str
    version: int
    message: str


class ApplyItem(Wire):
    """One document's outcome when a multi-document body is applied."""

    index: int
    ok: bool
    result: ApplyResult | None = None
    error: ErrorOut | None = None


class ApplyBatchOut(Wire):
    items: list[ApplyItem]


class DeleteResult(Wire):
    kind: str
    name: str
    zone: str
    workspace: str
    status: Literal["deleted", "draining"]
    message: str


class EventOut(Wire):
    kind: str
    name: str
    zone: str
    workspace: str
    reason: str
    message: str
    actor: str
    at: float


class EventList(Wire):
    items: list[EventOut]


class VersionOut(Wire):
    number: int
    spec: dict[str, Any]
    spec_hash: str
    actor: str
    at: float


class VersionList(Wire):
    items: list[VersionOut]


class TokenCreate(Wire):
    user: str = Field(min_length=1, max_length=253)
    workspace: str = Field(min_length=1, max_length=253)
    """The user's default workspace for requests made with this token."""
    id: str = Field(default="1", min_length=1, max_length=64)
    expires_in_s: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class TokenOut(Wire):
    jti: str
    user: str
    workspace: str
    id: str
    created_at: float
    expires_at: float | None
    created_by: str


class TokenCreated(TokenOut):
    token: str
    """Shown once: the server keeps only its id."""


class TokenList(Wire):
    items: list[TokenOut]


class ContainerTokenOut(Wire):
    """A single-use pass to one container's shell WebSocket (``?token=``)."""

    token: str
    expires_at: float
    """Unix time after which it is refused."""


class WhoAmI(Wire):
    user: str
    workspace: str
    zone: str
    grants: list[dict[str, str]]


class VersionInfo(Wire):
    server: str
    api: str = "v1"
    zone: str


# --------------------------------------------------------------------------- nodes


class GpuReport(Wire):
    model_config = ConfigDict(extra="ignore")

    index: int = Field(ge=0)
    minor_number: int | None = None
    uuid: str = ""
    product_name: str
    memory_total_mb: float | None = None
    memory_used_mb: float | None = None
    temperature_c: float | None = None
    temperature_max_c: float | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    utilization_pct: float | None = None
    processes: list[dict[str, Any]] = Field(default_factory=list)


class ContainerReport(Wire):
    model_config = ConfigDict(extra="ignore")

    workspace: str
    name: str
    uid: str = ""
    """The container record's uid this Docker container was created for."""
    state: str
    container_id: str = ""
    exit_code: int | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    restarts: int = Field(default=0, ge=0)
    """How often the agent restarted it (restartPolicy) since it was assigned."""


class NodeReport(Wire):
    """A node agent's heartbeat: inventory and the state of its containers."""

    model_config = ConfigDict(extra="ignore")

    version: str
    arch: str = ""
    cpu_model: str = ""
    cpu_count: int = Field(default=0, ge=0)
    cpu_load: list[float] = Field(default_factory=list)
    load_avg: list[float] = Field(default_factory=list)
    memory_total: int = Field(default=0, ge=0)
    memory_available: int = Field(default=0, ge=0)
    gpus: list[GpuReport] = Field(default_factory=list)
    docker_version: str = ""
    nvidia_runtime: bool = False
    endpoint_fingerprint: str = ""
    """SHA-256 of the agent's TLS certificate, pinned by the API for :3001 calls."""
    containers: list[ContainerReport] = Field(default_factory=list)
    complete: bool = True
    """True when `containers` lists every container of the node (stale ones absent)."""


class ReportOut(Wire):
    node: str
    status: str
    assignments_cursor: str
    ticket_key: str = ""
    """The API's public key (Ed25519, base64url) that signs the node's exec/logs tickets."""


class Assignment(Wire):
    workspace: str
    name: str
    uid: str
    version: int
    desired: str
    spec: dict[str, Any]
    computed: dict[str, Any] | None


class Assignments(Wire):
    cursor: str
    """Pass back as ``since`` to wait for the next change."""
    containers: list[Assignment]


# ------------------------------------------------------------------ volume files

MAX_MTIME = 253402300799.0
"""9999-12-31T23:59:59Z: the latest modification time an upload may set."""


class FileEntry(Wire):
    name: str
    type: Literal["file", "dir", "link"]
    """``link``: a symbolic link, listed but never followed."""
    size: int
    mtime: float
    """Modification time, Unix seconds."""


class FileList(Wire):
    volume: str
    path: str
    items: list[FileEntry]
    truncated: bool = False
    """True when the folder held more entries than one listing returns."""


class ManifestEntry(Wire):
    path: str
    """Relative to the folder asked for."""
    size: int
    mtime: float


class Manifest(Wire):
    """Every regular file below a folder (recursively), for `dora sync`."""

    volume: str
    path: str
    files: list[ManifestEntry]
    truncated: bool = False


class UploadCreate(Wire):
    path: str = Field(min_length=1, max_length=4096, examples=["data/train.csv"])
    """Where the file goes, relative to the volume's root."""
    size: int = Field(ge=0)
    mtime: float = Field(ge=0, le=MAX_MTIME, allow_inf_nan=False)
    """The file's modification time (Unix seconds), set when the upload completes."""


class UploadOut(Wire):
    id: str
    """The same for the same volume, path, size and mtime: asking again resumes."""
    path: str
    size: int
    offset: int
    """Bytes the server holds; send the rest from here."""
    complete: bool


# ------------------------------------------------------------ workspace clone, credits


class CloneIn(Wire):
    name: str = Field(max_length=1000, examples=["experiment-2"])
    """The new workspace is ``<source>.<name>``."""


class GrantOut(Wire):
    """One entry of ``User.spec.resources``."""

    kind: str
    zone: str
    workspace: str
    role: str


class CloneOut(Wire):
    workspace: str
    """The new workspace, ``<source>.<name>``."""
    source: str
    grants: list[GrantOut]
    """The grants added to the caller: copies of those they hold on `source`."""
    message: str


class CreditsOut(Wire):
    user: str
    zone: str
    weekly_limit: float | None
    """From ``User.spec.credits``; null: no budget in this zone (unlimited)."""
    weekly_used: float
    total_used: float
    remaining: float | None
    """Left this week (0 once spent); null when unlimited."""
    updated_at: float | None = None
    """When the credit checker last wrote; null when it never has."""
