from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Ack(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ServerInfoReply(_message.Message):
    __slots__ = ("time", "flctl_version", "python_version", "project")
    TIME_FIELD_NUMBER: _ClassVar[int]
    FLCTL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    time: float
    flctl_version: str
    python_version: str
    project: str
    def __init__(self, time: _Optional[float] = ..., flctl_version: _Optional[str] = ..., python_version: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("version", "running_jobs", "isolation", "resources")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    version: str
    running_jobs: _containers.RepeatedScalarFieldContainer[str]
    isolation: str
    resources: SiteResources
    def __init__(self, version: _Optional[str] = ..., running_jobs: _Optional[_Iterable[str]] = ..., isolation: _Optional[str] = ..., resources: _Optional[_Union[SiteResources, _Mapping]] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("project", "heartbeat_interval_s")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    project: str
    heartbeat_interval_s: float
    def __init__(self, project: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("running_jobs", "crl_number", "children", "resources")
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    CRL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    running_jobs: _containers.RepeatedScalarFieldContainer[str]
    crl_number: int
    children: _containers.RepeatedCompositeFieldContainer[SiteInfo]
    resources: SiteResources
    def __init__(self, running_jobs: _Optional[_Iterable[str]] = ..., crl_number: _Optional[int] = ..., children: _Optional[_Iterable[_Union[SiteInfo, _Mapping]]] = ..., resources: _Optional[_Union[SiteResources, _Mapping]] = ...) -> None: ...

class SiteResources(_message.Message):
    __slots__ = ("cpus", "memory_mb", "gpus", "gpu_sharing", "manages_gpus", "grants", "queued")
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_SHARING_FIELD_NUMBER: _ClassVar[int]
    MANAGES_GPUS_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    cpus: _containers.RepeatedScalarFieldContainer[int]
    memory_mb: int
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInfo]
    gpu_sharing: bool
    manages_gpus: bool
    grants: _containers.RepeatedCompositeFieldContainer[ResourceGrant]
    queued: int
    def __init__(self, cpus: _Optional[_Iterable[int]] = ..., memory_mb: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[GpuInfo, _Mapping]]] = ..., gpu_sharing: _Optional[bool] = ..., manages_gpus: _Optional[bool] = ..., grants: _Optional[_Iterable[_Union[ResourceGrant, _Mapping]]] = ..., queued: _Optional[int] = ...) -> None: ...

class GpuInfo(_message.Message):
    __slots__ = ("index", "name", "memory_mb", "used_mb", "free_mb")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    USED_MB_FIELD_NUMBER: _ClassVar[int]
    FREE_MB_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    memory_mb: int
    used_mb: int
    free_mb: int
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., memory_mb: _Optional[int] = ..., used_mb: _Optional[int] = ..., free_mb: _Optional[int] = ...) -> None: ...

class ResourceGrant(_message.Message):
    __slots__ = ("job_id", "cpus", "memory_mb", "gpus", "gpu_memory_mb")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    cpus: _containers.RepeatedScalarFieldContainer[int]
    memory_mb: int
    gpus: _containers.RepeatedScalarFieldContainer[int]
    gpu_memory_mb: int
    def __init__(self, job_id: _Optional[str] = ..., cpus: _Optional[_Iterable[int]] = ..., memory_mb: _Optional[int] = ..., gpus: _Optional[_Iterable[int]] = ..., gpu_memory_mb: _Optional[int] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("stop_jobs", "crl_pem")
    STOP_JOBS_FIELD_NUMBER: _ClassVar[int]
    CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    stop_jobs: _containers.RepeatedScalarFieldContainer[str]
    crl_pem: bytes
    def __init__(self, stop_jobs: _Optional[_Iterable[str]] = ..., crl_pem: _Optional[bytes] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("start", "stop")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    start: StartJob
    stop: StopJob
    def __init__(self, start: _Optional[_Union[StartJob, _Mapping]] = ..., stop: _Optional[_Union[StopJob, _Mapping]] = ...) -> None: ...

class StartJob(_message.Message):
    __slots__ = ("job_id", "name", "bundle_sha256", "submitter", "submitter_org", "signer_cert_pem", "signature", "claims_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_ORG_FIELD_NUMBER: _ClassVar[int]
    SIGNER_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    bundle_sha256: str
    submitter: str
    submitter_org: str
    signer_cert_pem: bytes
    signature: bytes
    claims_json: str
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., bundle_sha256: _Optional[str] = ..., submitter: _Optional[str] = ..., submitter_org: _Optional[str] = ..., signer_cert_pem: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., claims_json: _Optional[str] = ...) -> None: ...

class StopJob(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("job_id", "last_task_id", "streams", "task_id", "part")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    last_task_id: str
    streams: int
    task_id: str
    part: int
    def __init__(self, job_id: _Optional[str] = ..., last_task_id: _Optional[str] = ..., streams: _Optional[int] = ..., task_id: _Optional[str] = ..., part: _Optional[int] = ...) -> None: ...

class TaskHeader(_message.Message):
    __slots__ = ("task_id", "kind", "round", "meta_json", "size", "done", "status", "timeout_s", "parts")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    META_JSON_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    kind: str
    round: int
    meta_json: str
    size: int
    done: bool
    status: str
    timeout_s: float
    parts: int
    def __init__(self, task_id: _Optional[str] = ..., kind: _Optional[str] = ..., round: _Optional[int] = ..., meta_json: _Optional[str] = ..., size: _Optional[int] = ..., done: _Optional[bool] = ..., status: _Optional[str] = ..., timeout_s: _Optional[float] = ..., parts: _Optional[int] = ...) -> None: ...

class TaskMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: TaskHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[TaskHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ResultHeader(_message.Message):
    __slots__ = ("job_id", "task_id", "num_examples", "metrics", "meta_json", "size", "failed", "error", "part", "parts")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    META_JSON_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    num_examples: int
    metrics: _containers.ScalarMap[str, float]
    meta_json: str
    size: int
    failed: bool
    error: str
    part: int
    parts: int
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., num_examples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., meta_json: _Optional[str] = ..., size: _Optional[int] = ..., failed: _Optional[bool] = ..., error: _Optional[str] = ..., part: _Optional[int] = ..., parts: _Optional[int] = ...) -> None: ...

class ResultMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ResultHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[ResultHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("time", "line")
    TIME_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    time: float
    line: str
    def __init__(self, time: _Optional[float] = ..., line: _Optional[str] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("name", "value", "step", "has_step", "time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    HAS_STEP_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    step: int
    has_step: bool
    time: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., step: _Optional[int] = ..., has_step: _Optional[bool] = ..., time: _Optional[float] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("job_id", "logs", "metrics", "status", "error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    logs: _containers.RepeatedCompositeFieldContainer[LogLine]
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    status: str
    error: str
    def __init__(self, job_id: _Optional[str] = ..., logs: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ..., status: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class CertificateInfo(_message.Message):
    __slots__ = ("name", "kind", "org", "role", "not_after", "last_seen")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    org: str
    role: str
    not_after: float
    last_seen: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., org: _Optional[str] = ..., role: _Optional[str] = ..., not_after: _Optional[float] = ..., last_seen: _Optional[float] = ...) -> None: ...

class CertificateList(_message.Message):
    __slots__ = ("certificates",)
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    certificates: _containers.RepeatedCompositeFieldContainer[CertificateInfo]
    def __init__(self, certificates: _Optional[_Iterable[_Union[CertificateInfo, _Mapping]]] = ...) -> None: ...

class CrlRequest(_message.Message):
    __slots__ = ("crl_pem",)
    CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    crl_pem: bytes
    def __init__(self, crl_pem: _Optional[bytes] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("name", "org", "kind", "role", "project", "not_after", "notices")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    name: str
    org: str
    kind: str
    role: str
    project: str
    not_after: float
    notices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., org: _Optional[str] = ..., kind: _Optional[str] = ..., role: _Optional[str] = ..., project: _Optional[str] = ..., not_after: _Optional[float] = ..., notices: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitHeader(_message.Message):
    __slots__ = ("sha256", "size", "signer_cert_pem", "signature", "claims_json")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIGNER_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_JSON_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    signer_cert_pem: bytes
    signature: bytes
    claims_json: str
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., signer_cert_pem: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., claims_json: _Optional[str] = ...) -> None: ...

class SubmitMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SubmitHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SubmitHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class SiteState(_message.Message):
    __slots__ = ("name", "state", "round", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    round: int
    error: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., round: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("id", "name", "status", "submitter", "submitter_org", "submitted_at", "started_at", "ended_at", "round", "rounds", "sites", "wait_reason", "error", "workflow", "min_sites", "last_metrics_json", "artifacts", "reports_json", "compat")
    class ReportsJsonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_ORG_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    WAIT_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    MIN_SITES_FIELD_NUMBER: _ClassVar[int]
    LAST_METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_JSON_FIELD_NUMBER: _ClassVar[int]
    COMPAT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    status: str
    submitter: str
    submitter_org: str
    submitted_at: float
    started_at: float
    ended_at: float
    round: int
    rounds: int
    sites: _containers.RepeatedCompositeFieldContainer[SiteState]
    wait_reason: str
    error: str
    workflow: str
    min_sites: int
    last_metrics_json: str
    artifacts: str
    reports_json: _containers.ScalarMap[str, str]
    compat: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., submitter: _Optional[str] = ..., submitter_org: _Optional[str] = ..., submitted_at: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., round: _Optional[int] = ..., rounds: _Optional[int] = ..., sites: _Optional[_Iterable[_Union[SiteState, _Mapping]]] = ..., wait_reason: _Optional[str] = ..., error: _Optional[str] = ..., workflow: _Optional[str] = ..., min_sites: _Optional[int] = ..., last_metrics_json: _Optional[str] = ..., artifacts: _Optional[str] = ..., reports_json: _Optional[_Mapping[str, str]] = ..., compat: _Optional[str] = ...) -> None: ...

class JobList(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class MetricValue(_message.Message):
    __slots__ = ("site", "round", "name", "value", "step", "has_step")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    HAS_STEP_FIELD_NUMBER: _ClassVar[int]
    site: str
    round: int
    name: str
    value: float
    step: int
    has_step: bool
    def __init__(self, site: _Optional[str] = ..., round: _Optional[int] = ..., name: _Optional[str] = ..., value: _Optional[float] = ..., step: _Optional[int] = ..., has_step: _Optional[bool] = ...) -> None: ...

class MetricBatch(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[MetricValue]
    def __init__(self, values: _Optional[_Iterable[_Union[MetricValue, _Mapping]]] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("job_id", "site", "follow")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    site: str
    follow: bool
    def __init__(self, job_id: _Optional[str] = ..., site: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("site", "time", "line")
    SITE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    site: str
    time: float
    line: str
    def __init__(self, site: _Optional[str] = ..., time: _Optional[float] = ..., line: _Optional[str] = ...) -> None: ...

class SiteInfo(_message.Message):
    __slots__ = ("name", "org", "online", "last_heartbeat", "running_jobs", "not_after", "isolation", "parent", "resources")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    org: str
    online: bool
    last_heartbeat: float
    running_jobs: _containers.RepeatedScalarFieldContainer[str]
    not_after: float
    isolation: str
    parent: str
    resources: SiteResources
    def __init__(self, name: _Optional[str] = ..., org: _Optional[str] = ..., online: _Optional[bool] = ..., last_heartbeat: _Optional[float] = ..., running_jobs: _Optional[_Iterable[str]] = ..., not_after: _Optional[float] = ..., isolation: _Optional[str] = ..., parent: _Optional[str] = ..., resources: _Optional[_Union[SiteResources, _Mapping]] = ...) -> None: ...

class SiteList(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[SiteInfo]
    def __init__(self, sites: _Optional[_Iterable[_Union[SiteInfo, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("job_id", "after_seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "job_id", "time", "kind", "message", "data_json")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    job_id: str
    time: float
    kind: str
    message: str
    data_json: str
    def __init__(self, seq: _Optional[int] = ..., job_id: _Optional[str] = ..., time: _Optional[float] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...
