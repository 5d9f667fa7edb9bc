"""A node's own `local/resources.yml` (site-owned, never signed): how many jobs it runs at once, the disk it keeps
in reserve, whether it keeps a spare job process, and its flow-control window. Read once, at start.

Every key is checked: a value that is not allowed stops the node with a KitError (exit code 2) naming the file,
the key and what is allowed. Keys this module does not know (`api_version`, `cpus`, `gpus`) are left alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from node.tls import WINDOW_MB
from provisioner.errors import KitError

MIB = 1024 * 1024
MIN_WINDOW_MB = 1 / 16  # 64 KiB, HTTP/2's own initial window: a smaller one only slows every transfer
MAX_WINDOW_MB = 1024
MAX_CALLS = 20_000  # the server gives each call in progress a thread: more than this is not a machine's worth


@dataclass(frozen=True)
class Resources:
    max_concurrent_jobs: int = 2
    """Jobs the server runs at once (the scheduler holds the rest)."""
    disk_reserve_mb: float = 16
    """The server's reserve file: room to record a full disk (see `node.server.disk_guard`)."""
    spare_job_process: bool = True
    """Keep a job process started ahead of time (see `node.spare_process`)."""
    stream_window_mb: float = WINDOW_MB
    """The flow-control window of each gRPC stream this node receives on; 0: gRPC's adaptive window."""
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

    @property
    def disk_reserve_bytes(self) -> int:
        return int(self.disk_reserve_mb * MIB)

    @property
    def stream_window_bytes(self) -> int:
        return int(self.stream_window_mb * MIB)


def resources_path(kit_root: Path) -> Path:
    return kit_root / "local" / "resources.yml"


def load_resources(path: Path) -> Resources:
    """The resources in `path`; the defaults when there is no such file or it names none of them."""
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return Resources()
    except (OSError, yaml.YAMLError) as exc:
        raise KitError(f"cannot read {path}: {exc}") from None
    if document is None:
        return Resources()
    if not isinstance(document, dict):
        raise KitError(f"{path}: must be a mapping of settings (key: value), not {type(document).__name__}")
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
        max_calls=whole("max_calls", 1, MAX_CALLS, "calls"),
        max_streams=whole("max_streams", 1, MAX_CALLS, "streams"),
        max_calls_per_peer=whole("max_calls_per_peer", 1, MAX_CALLS, "calls"),
        max_streams_per_peer=whole("max_streams_per_peer", 1, MAX_CALLS, "streams"),
        handshake_timeout_s=number("handshake_timeout_s", 0.1, 3600, "a time in seconds from 0.1 to 3600"),
        max_log_line_chars=whole("max_log_line_chars", 80, 1 << 20, "characters"),
        max_log_lines_per_minute=whole("max_log_lines_per_minute", 1, 10_000_000, "lines"),
        max_metrics_per_minute=whole("max_metrics_per_minute", 1, 10_000_000, "metric values"),
    )
