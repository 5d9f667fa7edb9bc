"""A node's own `local/resources.yml` (site-owned, never signed): how many jobs it runs at once, the disk it keeps
in reserve, whether it keeps a spare job process, and its flow-control window. Read once, at start.

Every key is checked: a value that is not allowed stops the node with a KitError (exit code 2) naming the file,
the key and what is allowed. A key that is not a setting (a misspelt one would otherwise be a default silently put
in its place) is refused the same way, naming the key and the nearest setting.

A site's `cpus`, `memory_mb`, `gpus`, `gpu_memory_gb` and `gpu_sharing` are what it offers jobs: its agent places each
job by them (`flctl.node.site.placement`); `flctl deploy docker|k8s|slurm` also sets its container's limits from
`cpus`, `memory_mb` and how many `gpus` it lists (flctl.cloud.project_kits).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from flctl.node.config.local_yaml import read_local_yaml
from flctl.node.security.tls import WINDOW_MB
from flctl.node.wire.model_parts import MAX_PARTS
from flctl.provisioner.errors import KitError

MIB = 1024 * 1024
MIN_WINDOW_MB = 1 / 16  # 64 KiB, HTTP/2's own initial window: a smaller one only slows every transfer
MAX_WINDOW_MB = 1024
MAX_CALLS = 20_000  # the server gives each call in progress a thread: more than this is not a machine's worth


@dataclass(frozen=True)
class Resources:
    max_concurrent_jobs: int = 2
    """Jobs the server runs at once (the scheduler holds the rest)."""
    disk_reserve_mb: float = 16
    """The server's reserve file: room to record a full disk (see `flctl.node.server.disk_guard`)."""
    spare_job_process: bool = True
    """Keep a job process started ahead of time (see `flctl.node.process.spare_process`)."""
    stream_window_mb: float = WINDOW_MB
    """The flow-control window of each gRPC stream this node receives on; 0: gRPC's adaptive window."""
    model_streams: int = 1
    """How many concurrent streams a site's job process takes each model over, and sends each answer over (see
    `flctl.node.wire.model_parts`); the server follows what each site asks."""
    job_isolation: str = "required"
    """A site's job scripts: `required` (Landlock, or another user where the site runs as root; a site with neither
    refuses every job), `preferred` (the same, but a site with neither runs jobs unconfined, with a warning), `off`
    (never confined). See `flctl.node.site.sandbox`."""
    job_user: str = "nobody"
    """The user a job script runs as where the site runs as root and the kernel has no Landlock."""
    job_env_allow: tuple[str, ...] = ()
    """Variables of the site's environment a job script gets besides PATH, LANG, LC_ALL and TZ."""
    data_paths: tuple[str, ...] = ()
    """Folders or files a job script may read (absolute paths), besides its own workspace."""
    tls_min_version: str = "1.3"
    """The lowest TLS version the server accepts: "1.3", or "1.2" for peers that need it (see `security.tls_policy`)."""
    retention_days: float = 0
    """Ended jobs older than this are removed (the server's records and folders, a site's workspaces); 0: kept."""
    max_calls: int = 4000
    """Calls the server serves at once, from everyone, streams included (1,000 sites hold about 3,000 in a round)."""
    max_streams: int = 3500
    """Streaming calls (command streams, task polls, uploads, watches) the server serves at once, from everyone."""
    max_calls_per_peer: int = 64
    """Calls one certificate (its name and kind) may have in progress at once; a site uses about 5."""
    max_streams_per_peer: int = 32
    """Streaming calls one certificate may have open at once (an admin's watches, log follows, downloads)."""
    handshake_timeout_s: float = 20
    """How long a new connection may take to finish its TLS handshake before the server closes it."""
    max_log_line_chars: int = 4096
    """A site's log line longer than this is cut, with a marker saying how much."""
    max_log_lines_per_minute: int = 1200
    """Log lines one site may add to one job a minute; the rest of that minute is dropped, with one note."""
    max_metrics_per_minute: int = 1200
    """Metric values one site may add to one job a minute; the rest of that minute is dropped, with one note."""
    metrics_port: int = 0
    """The server's Prometheus endpoint, `http://METRICS_HOST:PORT/metrics` (see `flctl.node.server.prometheus`);
    0: none (the default). Needs the telemetry extra (prometheus-client)."""
    metrics_host: str = "127.0.0.1"
    """The address the Prometheus endpoint listens on: this machine only unless set (0.0.0.0: every interface)."""
    transport: str = ""
    """A site's transport to the server, when it is not the one its kit names: grpc, or wss (gRPC inside a
    WebSocket on HTTPS, for a site behind an HTTP proxy; see `flctl.node.transport`); "": the kit's."""
    wss_auth: str = "certificate"
    """A wss site: how its WebSocket authenticates, `certificate` (its client certificate) or `token` (a signed
    token, for a proxy that inspects TLS; the server must allow it). See `flctl.node.transport.wss_token`."""
    wss_token_auth: bool = False
    """The server: let a WebSocket without a client certificate in with a valid site token (`wss_auth: token`)."""
    cpus: float | None = None
    """A site: the CPU cores it offers jobs (a job asking `cpus: N` is pinned to N of them no other job holds);
    None (`auto`): the cores this site may run on."""
    memory_mb: int | None = None
    """A site: the memory it offers jobs, in MiB (jobs' `memory_mb` together stay within it); None (`auto`): the
    machine's physical memory."""
    gpus: tuple[int, ...] | None = ()
    """A site: the GPUs it offers jobs, by index (nvidia-smi's); None (`auto`): every GPU NVML, nvidia-smi or torch
    finds; (): none, and jobs are not given GPUs (CUDA_VISIBLE_DEVICES is left alone)."""
    gpu_memory_gb: float = 0
    """A site: the memory of each of its GPUs, in GiB, offered to jobs; 0: what detection says."""
    gpu_sharing: bool = False
    """A site: let several jobs use one GPU while the gpu_memory_gb they ask of it fits (else a GPU is one job's)."""

    @property
    def disk_reserve_bytes(self) -> int:
        return int(self.disk_reserve_mb * MIB)

    @property
    def stream_window_bytes(self) -> int:
        return int(self.stream_window_mb * MIB)


def resources_path(kit_root: Path) -> Path:
    return kit_root / "local" / "resources.yml"


NOT_SETTINGS = frozenset({"api_version"})
"""Keys a kit's resources.yml carries that are not fields of `Resources`."""


def known_keys() -> frozenset[str]:
    return NOT_SETTINGS | {field.name for field in fields(Resources)}


def _refuse_unknown(path: Path, document: dict[Any, Any]) -> None:
    known = known_keys()
    for key in document:
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise KitError(f"{path}: {key!r} is not a setting{hint} (the settings: {', '.join(sorted(known))})")


def load_resources(path: Path) -> Resources:
    """The resources in `path`; the defaults when there is no such file or it names none of them."""
    document = read_local_yaml(path)
    if document is None:
        return Resources()
    if not isinstance(document, dict):
        raise KitError(f"{path}: must be a mapping of settings (key: value), not {type(document).__name__}")
    _refuse_unknown(path, document)
    defaults = Resources()

    def number(key: str, low: float, high: float, allowed: str, zero_too: bool = False) -> float:
        value: Any = document.get(key, getattr(defaults, key))
        good = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and \
            (low <= value <= high or (zero_too and value == 0))
        if not good:
            raise KitError(f"{path}: {key} must be {allowed} (default {getattr(defaults, key):g}), not {value!r}")
        return float(value)

    jobs = number("max_concurrent_jobs", 1, 10_000, "a whole number of jobs, 1 or more")
    if jobs != int(jobs):
        raise KitError(f"{path}: max_concurrent_jobs must be a whole number of jobs, 1 or more (default "
                       f"{defaults.max_concurrent_jobs}), not {document['max_concurrent_jobs']!r}")
    spare = document.get("spare_job_process", defaults.spare_job_process)
    if not isinstance(spare, bool):
        raise KitError(f"{path}: spare_job_process must be true or false (default true), not {spare!r}")
    tls = document.get("tls_min_version", defaults.tls_min_version)
    if tls not in ("1.2", "1.3"):
        raise KitError(f'{path}: tls_min_version must be "1.3" or "1.2" (default "1.3"), not {tls!r}')

    def whole(key: str, low: int, high: int, unit: str) -> int:
        allowed = f"a whole number of {unit} from {low} to {high}"
        value = number(key, low, high, allowed)
        if value != int(value):
            raise KitError(f"{path}: {key} must be {allowed} (default {getattr(defaults, key)}), not {document[key]!r}")
        return int(value)

    return Resources(
        max_concurrent_jobs=int(jobs),
        disk_reserve_mb=number("disk_reserve_mb", 0, 1 << 20, "a size in MB, 0 or more"),
        spare_job_process=spare,
        stream_window_mb=number("stream_window_mb", MIN_WINDOW_MB, MAX_WINDOW_MB,
                                f"a size in MiB from {MIN_WINDOW_MB:g} to {MAX_WINDOW_MB}, or 0 for gRPC's "
                                "adaptive window", zero_too=True),
        model_streams=whole("model_streams", 1, MAX_PARTS, "streams"),
        **_isolation(path, document),
        tls_min_version=tls,
        retention_days=number("retention_days", 0, 100_000, "a number of days, or 0 to keep ended jobs"),
        max_calls=whole("max_calls", 1, MAX_CALLS, "calls"),
        max_streams=whole("max_streams", 1, MAX_CALLS, "streams"),
        max_calls_per_peer=whole("max_calls_per_peer", 1, MAX_CALLS, "calls"),
        max_streams_per_peer=whole("max_streams_per_peer", 1, MAX_CALLS, "streams"),
        handshake_timeout_s=number("handshake_timeout_s", 0.1, 3600, "a time in seconds from 0.1 to 3600"),
        max_log_line_chars=whole("max_log_line_chars", 80, 1 << 20, "characters"),
        max_log_lines_per_minute=whole("max_log_lines_per_minute", 1, 10_000_000, "lines"),
        max_metrics_per_minute=whole("max_metrics_per_minute", 1, 10_000_000, "metric values"),
        metrics_port=_port(path, document, number("metrics_port", 0, 65535, _PORT)),
        metrics_host=_host(path, document.get("metrics_host", defaults.metrics_host)),
        transport=_transport(path, document.get("transport", defaults.transport)),
        **_wss_auth(path, document),
        **_offered(path, document),
    )


_PORT = "a TCP port from 1 to 65535, or 0 for no Prometheus endpoint"


def _port(path: Path, document: dict[Any, Any], value: float) -> int:
    if value != int(value):
        raise KitError(f"{path}: metrics_port must be {_PORT} (default 0), not {document['metrics_port']!r}")
    return int(value)


def _host(path: Path, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise KitError(f"{path}: metrics_host must be an address to listen on, e.g. 127.0.0.1 (the default) or "
                       f"0.0.0.0, not {value!r}")
    return value


def _transport(path: Path, value: Any) -> str:
    if value not in ("", "grpc", "wss"):
        raise KitError(f"{path}: transport must be grpc or wss (default: the one the kit names), not {value!r}")
    return str(value)


def _wss_auth(path: Path, document: dict[Any, Any]) -> dict[str, Any]:
    auth = document.get("wss_auth", "certificate")
    if auth not in ("certificate", "token"):
        raise KitError(f"{path}: wss_auth must be certificate or token (default certificate), not {auth!r}")
    tokens = document.get("wss_token_auth", False)
    if not isinstance(tokens, bool):
        raise KitError(f"{path}: wss_token_auth must be true or false (default false), not {tokens!r}")
    return {"wss_auth": auth, "wss_token_auth": tokens}


def _isolation(path: Path, document: dict[Any, Any]) -> dict[str, Any]:
    """A site's job-script settings (`flctl.node.site.sandbox`), checked."""
    defaults = Resources()
    isolation = document.get("job_isolation", defaults.job_isolation)
    if isolation is False:  # YAML reads a bare `off` as false
        isolation = "off"
    if isolation not in ("required", "preferred", "off"):
        raise KitError(f"{path}: job_isolation must be required, preferred or off (default required), not "
                       f"{isolation!r}")
    job_user = document.get("job_user", defaults.job_user)
    if not isinstance(job_user, str | int) or isinstance(job_user, bool) or not str(job_user).strip():
        raise KitError(f"{path}: job_user must be a user name or number (default nobody), not {job_user!r}")
    env_allow = _names(path, "job_env_allow", document.get("job_env_allow", []))
    data_paths = _names(path, "data_paths", document.get("data_paths", []))
    relative = [p for p in data_paths if not p.startswith("/")]
    if relative:
        raise KitError(f"{path}: data_paths must be absolute paths, not {relative[0]!r}")
    return {"job_isolation": isolation, "job_user": str(job_user), "job_env_allow": env_allow,
            "data_paths": data_paths}


def _names(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        example = "[CUDA_VISIBLE_DEVICES]" if key == "job_env_allow" else "[/data/x]"
        raise KitError(f"{path}: {key} must be a list, e.g. {example}, not {value!r}")
    return tuple(value)


def _offered(path: Path, document: dict[Any, Any]) -> dict[str, Any]:
    """What a site offers jobs (`flctl.node.site.placement`): cpus, memory_mb, gpus, gpu_memory_gb, gpu_sharing."""
    cpus = document.get("cpus", "auto")
    if cpus != "auto" and (isinstance(cpus, bool) or not isinstance(cpus, int | float) or not math.isfinite(cpus)
                           or cpus < 1):
        raise KitError(f"{path}: cpus must be auto (the cores this site may run on) or a number of cores, 1 or "
                       f"more, not {cpus!r}")
    memory = document.get("memory_mb", "auto")
    if memory != "auto" and (isinstance(memory, bool) or not isinstance(memory, int) or memory < 64):
        raise KitError(f"{path}: memory_mb must be auto (the machine's memory) or a whole number of MiB, 64 or more, "
                       f"not {memory!r}")
    gpus = document.get("gpus", [])
    if gpus is None:
        gpus = []
    good = gpus == "auto" or (isinstance(gpus, list) and all(isinstance(i, int) and not isinstance(i, bool) and
                                                              i >= 0 for i in gpus) and len(set(gpus)) == len(gpus))
    if not good:
        raise KitError(f"{path}: gpus must be auto (every GPU nvidia-smi finds), a list of distinct GPU indices "
                       f"(e.g. [0, 1]) or [] for none, not {gpus!r}")
    gpu_memory = document.get("gpu_memory_gb", 0)
    if isinstance(gpu_memory, bool) or not isinstance(gpu_memory, int | float) or not math.isfinite(gpu_memory) \
            or not 0 <= gpu_memory <= 1 << 20:
        raise KitError(f"{path}: gpu_memory_gb must be the memory of each GPU in GiB, above 0 (0 or absent: what "
                       f"detection says), not {gpu_memory!r}")
    sharing = document.get("gpu_sharing", False)
    if not isinstance(sharing, bool):
        raise KitError(f"{path}: gpu_sharing must be true or false (default false), not {sharing!r}")
    return {"cpus": None if cpus == "auto" else float(cpus), "memory_mb": None if memory == "auto" else memory,
            "gpus": None if gpus == "auto" else tuple(gpus), "gpu_memory_gb": float(gpu_memory),
            "gpu_sharing": sharing}
