"""Submit, inspect and stop the Slurm jobs of a `flctl deploy slurm` folder, through sbatch, squeue and scancel.

The folder's `slurm.json` (flctl.cloud.slurm_scripts) names each node's script and job name. Jobs are found by
name among the current user's jobs, so a job requeued near its time limit (same id) or submitted again by hand
(`bash DIR/submit.sh`, a new id) is found all the same. Parsing squeue's output is pure (`parse_squeue`); the
commands run through `run_slurm`, which turns a missing command or a controller that does not answer into
SchedulerUnreachable (exit 3).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from flctl.cloud.deploy_errors import DeployError, DeployInputError, SchedulerUnreachable
from flctl.cloud.slurm_scripts import MANIFEST
from flctl.node.errors import TimedOut

SQUEUE_FORMAT = "%i|%j|%T|%M|%L|%N|%r"
"""Job id, name, state, time used, time left, node, reason (last: the one field that may hold spaces)."""
_UNREACHABLE = ("Unable to contact slurm controller", "Could not establish a configuration source",
                "Zero Bytes were transmitted", "Connection refused", "Socket timed out")
Runner = Callable[[list[str]], str]


@dataclass(frozen=True)
class NodeEntry:
    """One node of the folder: who it is and what its job is called."""

    participant: str
    kind: str
    script: str
    job_name: str


@dataclass(frozen=True)
class SlurmFolder:
    """What `flctl deploy slurm` wrote: the project, its nodes (the server first when it runs under Slurm)."""

    path: Path
    project: str
    logs: Path
    nodes: list[NodeEntry]

    @property
    def servers(self) -> list[NodeEntry]:
        return [n for n in self.nodes if n.kind == "server"]

    @property
    def sites(self) -> list[NodeEntry]:
        return [n for n in self.nodes if n.kind == "site"]


SLURM_RUNNING = "RUNNING"  # squeue's word for a job that runs


@dataclass(frozen=True)
class NodeJob:
    """A node's job as squeue shows it; `state` is `NOT QUEUED` (and the rest empty) when squeue has none."""

    participant: str
    kind: str
    job_name: str
    job_id: str = ""
    state: str = "NOT QUEUED"
    node: str = ""
    elapsed: str = ""
    time_left: str = ""
    reason: str = ""

    @property
    def running(self) -> bool:
        """Whether squeue shows the job running (Slurm's own state word, not one of flctl's job statuses)."""
        return self.state == SLURM_RUNNING

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_folder(path: Path) -> SlurmFolder:
    """The folder `flctl deploy slurm -o DIR` wrote; DeployInputError naming what is wrong."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise DeployInputError(f"[DIR] {path} has no {MANIFEST}: give the folder `flctl deploy slurm "
                               "PROJECT_WORKSPACE -o DIR` wrote")
    try:
        doc = json.loads(manifest.read_text())
        nodes = [NodeEntry(str(n["participant"]), str(n["kind"]), str(n["script"]), str(n["job_name"]))
                 for n in doc["nodes"]]
        folder = SlurmFolder(path, str(doc["project"]), Path(str(doc["logs"])), nodes)
    except (ValueError, KeyError, TypeError) as exc:
        raise DeployInputError(f"[{manifest}] is not a manifest flctl wrote ({exc}); write the folder again "
                               "with `flctl deploy slurm ... --force`") from None
    for node in nodes:
        if not (path / node.script).is_file():
            raise DeployInputError(f"[{path / node.script}] is missing; write the folder again with "
                                   "`flctl deploy slurm ... --force`")
    return folder


def run_slurm(argv: list[str]) -> str:
    """Run a Slurm command here; its stdout. SchedulerUnreachable when it is missing or the controller is silent,
    DeployError (exit 1) when it refuses."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise SchedulerUnreachable(f"{argv[0]} is not installed here: run this on a login node of the Slurm "
                                   "cluster (or put Slurm's commands on PATH)") from None
    except subprocess.TimeoutExpired:
        raise SchedulerUnreachable(f"{argv[0]} did not answer in 60 s: is slurmctld running?") from None
    return answer(argv, done.returncode, done.stdout, done.stderr)


def answer(argv: list[str], code: int, stdout: str, stderr: str) -> str:
    """A finished Slurm command's stdout; SchedulerUnreachable when it could not reach the controller, DeployError
    when it refused (shared by run_slurm and the runner over SSH of flctl.cloud.targets.slurm)."""
    if code != 0:
        lines = (stderr.strip() or stdout.strip()).splitlines()
        last = lines[-1] if lines else f"exit code {code}"
        if any(text in stderr for text in _UNREACHABLE):
            raise SchedulerUnreachable(f"{argv[0]} cannot reach the Slurm controller: {last}")
        raise DeployError(f"{argv[0]} failed: {last}")
    return stdout


def parse_squeue(text: str) -> dict[str, list[dict[str, str]]]:
    """squeue's `--noheader --format=SQUEUE_FORMAT` lines, by job name (a name may have several jobs)."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        fields = line.split("|", 6)
        if len(fields) != 7:
            continue
        job_id, name, state, elapsed, left, node, reason = (f.strip() for f in fields)
        jobs.setdefault(name, []).append({"job_id": job_id, "state": state, "elapsed": elapsed,
                                          "time_left": left, "node": node, "reason": reason})
    return jobs


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def status(folder: SlurmFolder, runner: Runner = run_slurm, user: str | None = None) -> list[NodeJob]:
    """Each node's job as squeue shows it now (the newest when a name has several), among `user`'s jobs (default:
    this process's user; over SSH: the login's)."""
    names = ",".join(n.job_name for n in folder.nodes)
    queued = parse_squeue(runner(["squeue", "--noheader", f"--user={user or _user()}", f"--name={names}",
                                  f"--format={SQUEUE_FORMAT}"]))
    out = []
    for node in folder.nodes:
        job = NodeJob(node.participant, node.kind, node.job_name)
        rows = sorted(queued.get(node.job_name, []), key=lambda r: int(r["job_id"]) if r["job_id"].isdigit() else 0)
        if rows:
            job = replace(job, **rows[-1])
        out.append(job)
    return out


def submit(folder: SlurmFolder, runner: Runner = run_slurm, user: str | None = None) -> list[NodeJob]:
    """Submit every node: the server first, each site once the server's job has started (`--dependency=after`).
    Refused (DeployError) when one of them is already queued: stop it first. With a runner of its own (over SSH)
    the logs folder is the rollout's to make (flctl.cloud.slurm_rollout writes it with the scripts)."""
    queued = [job for job in status(folder, runner, user) if job.job_id]
    if queued:
        shown = ", ".join(f"{j.participant} (job {j.job_id}, {j.state})" for j in queued)
        raise DeployError(f"already queued: {shown}; stop them first with `flctl deploy slurm stop {folder.path}`")
    if runner is run_slurm:
        folder.logs.mkdir(parents=True, exist_ok=True)
    out: list[NodeJob] = []
    after: list[str] = []
    for node in [*folder.servers, *folder.sites]:
        job_id = runner(["sbatch", "--parsable", *after, str(folder.path / node.script)]).strip().split(";")[0]
        out.append(NodeJob(node.participant, node.kind, node.job_name, job_id, "SUBMITTED"))
        if node.kind == "server":
            after = [f"--dependency=after:{job_id}"]
    return out


def stop(folder: SlurmFolder, timeout_s: float = 120, runner: Runner = run_slurm,
         user: str | None = None) -> list[NodeJob]:
    """Cancel the sites' jobs, wait until they have left the queue, then the server's: each node takes scancel's
    SIGTERM as a clean stop. What was cancelled (nodes with no job are listed as NOT QUEUED); TimedOut when a job
    is still there after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    jobs = status(folder, runner, user)
    for kind in ("site", "server"):
        ids = [job.job_id for job in jobs if job.kind == kind and job.job_id]
        if not ids:
            continue
        runner(["scancel", *ids])
        while True:
            left = [job for job in status(folder, runner, user) if job.job_id in ids]
            if not left:
                break
            if time.monotonic() > deadline:
                shown = ", ".join(f"{j.participant} (job {j.job_id}, {j.state})" for j in left)
                raise TimedOut(f"still in the queue after {timeout_s:g} s: {shown}; see `squeue` and the logs "
                               f"in {folder.logs}")
            time.sleep(0.5)
    return [replace(job, state="CANCELLED") if job.job_id else job for job in jobs]
