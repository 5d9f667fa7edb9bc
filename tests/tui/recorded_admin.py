"""A recorded federation for deterministic screens: fixed sites, jobs, events and logs, served like the real
client serves them (streams stay open until closed). Snapshots need fixed ids and times, which a live server
cannot give; tests/tui/test_live.py drives the same screens against a real federation."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path

from flctl.node import errors
from flctl.node.admin.admin_types import Event, Identity, JobInfo, JobSite, LogEntry, SiteInfo
from flctl.node.site.placement import Capacity, Gpu, Grant, SiteLoad

NOW = 1_790_000_000.0
DAY = 86400.0
A100 = "NVIDIA A100-SXM4-40GB"
TWO_GPUS = SiteLoad(Capacity((0, 1, 2, 3), 65536, (Gpu(0, A100, 40960, 20480, 20480), Gpu(1, A100, 40960, 0, 40960)),
                             manages_gpus=True), (Grant("a1b2c3", gpus=(0,)),))
"""site-1 offers two GPUs; the running job holds one."""


def _job(job_id: str, name: str, status: str, rnd: int, rounds: int, started: float, ended: float = 0.0,
         sites: list[JobSite] | None = None, metrics: dict[str, dict[str, float]] | None = None,
         wait: str = "") -> JobInfo:
    return JobInfo(id=job_id, name=name, status=status, submitter="admin@hub.org", submitter_org="hub",
                   submitted_at=started - 2, started_at=started, ended_at=ended, round=rnd, rounds=rounds,
                   workflow="fedavg", min_sites=2, sites=sites or [], wait_reason=wait,
                   last_metrics=metrics or {})


def round_events(job_id: str, rounds: int, first_seq: int) -> list[Event]:
    out = []
    for r in range(1, rounds + 1):
        metrics = {"site-1": {"loss": 1.0 / r, "accuracy": 0.5 + 0.1 * r},
                   "site-2": {"loss": 1.2 / r, "accuracy": 0.45 + 0.1 * r}}
        out.append(Event(first_seq + r, job_id, NOW - 100 + r, "round", f"round {r} complete",
                         {"round": r, "metrics": metrics}))
    return out


class RecordedAdmin:
    """Satisfies flctl.console.tui.admin_api.Admin; `refuse` names calls that raise NotPermitted."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.closed = threading.Event()
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.sites = [
            SiteInfo("site-1", "org_1", True, NOW - 2, ["a1b2c3"], NOW + 300 * DAY, resources=TWO_GPUS),
            SiteInfo("site-2", "org_2", False, NOW - 95, [], NOW + 12 * DAY),
        ]
        working = [JobSite("site-1", "working", 2, ""), JobSite("site-2", "done", 2, "")]
        self.jobs = [
            _job("9f8e7d", "hello-numpy", "FINISHED", 3, 3, NOW - 400, NOW - 380,
                 [JobSite("site-1", "done", 3, ""), JobSite("site-2", "done", 3, "")],
                 {"site-1": {"loss": 0.33}, "site-2": {"loss": 0.4}}),
            _job("a1b2c3", "cifar10-fedavg", "RUNNING", 2, 5, NOW - 75, sites=working,
                 metrics={"site-1": {"loss": 1.0}, "site-2": {"loss": 1.2}}),
            _job("c4d5e6", "stats", "SUBMITTED", 0, 0, 0.0, wait="waiting for 2 sites, 1 online"),
        ]
        self.events = {"a1b2c3": round_events("a1b2c3", 2, 10), "9f8e7d": round_events("9f8e7d", 3, 0)}
        self.log_lines = {"a1b2c3": [LogEntry("server", NOW - 70, "round 1: train sent to 2 sites"),
                                     LogEntry("site-1", NOW - 69, "epoch 1 loss=1.000"),
                                     LogEntry("site-2", NOW - 68, "epoch 1 loss=1.200")]}
        self.submitted: list[Path] = []

    def connect(self) -> RecordedAdmin:
        """A connection of its own: closing it ends only its streams; the recorded data is shared."""
        session = copy.copy(self)
        session.closed = threading.Event()
        return session

    def _called(self, name: str, *args: object) -> None:
        self.calls.append((name, args))
        if name in self.refuse:
            raise errors.NotPermitted(f"not permitted: role member may not {name.replace('_', ' ')}")

    def _hold(self) -> None:
        """Like a live stream with nothing new: block until the client is closed."""
        self.closed.wait()

    def whoami(self) -> Identity:
        self._called("whoami")
        return Identity("admin@hub.org", "hub", "admin", "project_admin", "fedtest", NOW + 200 * DAY)

    def submit_job(self, folder: Path) -> str:
        self._called("submit_job", folder)
        self.submitted.append(folder)
        return "d7e8f9"

    def list_jobs(self) -> list[JobInfo]:
        self._called("list_jobs")
        return list(self.jobs)

    def get_job(self, job_id: str) -> JobInfo:
        self._called("get_job", job_id)
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise errors.NotFound(f"no job {job_id}")

    def abort_job(self, job_id: str) -> JobInfo:
        self._called("abort_job", job_id)
        return self.get_job(job_id)

    def download_job(self, job_id: str, out_dir: Path) -> Path:
        self._called("download_job", job_id, out_dir)
        return out_dir / job_id

    def logs(self, job_id: str, site: str = "", follow: bool = False) -> Iterator[LogEntry]:
        self._called("logs", job_id, site, follow)
        yield from (e for e in self.log_lines.get(job_id, []) if not site or e.site == site)
        if follow and not self.get_job(job_id).ended:
            self._hold()

    def list_sites(self) -> list[SiteInfo]:
        self._called("list_sites")
        return list(self.sites)

    def watch(self, job_id: str = "", after_seq: int = 0) -> Iterator[Event]:
        self._called("watch", job_id, after_seq)
        if job_id:
            yield from (e for e in self.events.get(job_id, []) if e.seq > after_seq)
            if self.get_job(job_id).ended:
                return
        self._hold()

    def close(self) -> None:
        self.closed.set()
