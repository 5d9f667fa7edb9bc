"""Rebuild the server's database from the job folders on disk, when the database is damaged (`flctl node recover`).

Each job's folder, `WORKSPACE/jobs/<id>/`, holds what the job needs to run (`bundle.zip`, `signature.json`,
`job.yml`), its row (`record.json`, kept current whenever its status changes), what it was started with
(`run.json`), its models, and once it ended its logs and metrics. The damaged database is moved aside, never
deleted; a new one gets every job that can be read back, with its status; jobs that were running resume from
their last checkpoint when the server starts (as after any restart). What cannot come back is said: events
before the recovery, and the logs and metrics of jobs that had not ended, lived only in the database; sites
register again when they connect.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flctl.node.jobs import checkpoints, metrics_file
from flctl.node.jobs.job_status import ENDED, JobStatus, SiteState
from flctl.node.server.job_messages import RUN_PLAN
from flctl.node.server.job_records import RECORD_FILE, load_record
from flctl.node.server.store import JobRow, Store, StoreDamaged

DB_NAME = "server.db"
LOST = [
    "every job's events before the recovery (each job gets one 'recovered' event instead)",
    "the logs and metrics of jobs that had not ended (an ended job's come back from its logs/ and metrics.json)",
    "the site registry (each site registers again when it next connects)",
]


@dataclass(frozen=True)
class RecoveredJob:
    id: str
    name: str
    status: str
    source: str  # "record.json", or "bundle" when the row was rebuilt from the bundle and the files beside it


@dataclass
class RecoveryReport:
    database: Path
    healthy: bool = False  # the database passed its check: nothing was changed
    moved_aside: list[Path] = field(default_factory=list)
    recovered: list[RecoveredJob] = field(default_factory=list)
    not_recovered: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)
    lost: list[str] = field(default_factory=list)


def check(workspace: Path) -> str:
    """Why the workspace's database is damaged, or '' when it passes SQLite's check (or is not there)."""
    path = workspace / DB_NAME
    if not path.exists():
        return ""
    try:
        Store(path).close()
    except StoreDamaged as exc:
        return exc.detail
    return ""


def recover(workspace: Path) -> RecoveryReport:
    """Move a damaged database aside and rebuild the jobs from `workspace/jobs`. A healthy one is left alone."""
    path = workspace / DB_NAME
    report = RecoveryReport(path)
    if path.exists() and not check(workspace):
        report.healthy = True
        return report
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for suffix in ("", "-wal", "-shm"):
        old = workspace / f"{DB_NAME}{suffix}"
        if old.exists():
            aside = workspace / f"{DB_NAME}.damaged-{stamp}{suffix}"
            old.rename(aside)
            report.moved_aside.append(aside)
    store = Store(path)
    try:
        jobs_dir = workspace / "jobs"
        folders = sorted(p for p in jobs_dir.iterdir() if p.is_dir()) if jobs_dir.is_dir() else []
        for folder in folders:
            try:
                job, source = _job_from(folder)
            except (OSError, ValueError, KeyError) as exc:
                report.not_recovered.append((folder.name, str(exc)))
                continue
            _restore(store, folder, job, source)
            report.recovered.append(RecoveredJob(job.id, job.name, job.status, source))
    finally:
        store.close()
    report.lost = list(LOST)
    return report


def _job_from(folder: Path) -> tuple[JobRow, str]:
    """The job's row: from its record, or rebuilt from its bundle and the files beside it."""
    if not (folder / "bundle.zip").is_file():
        raise ValueError("no bundle.zip: this is not a job the server accepted")
    if (folder / RECORD_FILE).is_file():
        try:
            job = load_record(folder)
        except (OSError, ValueError) as exc:
            return _rebuild(folder), f"bundle ({RECORD_FILE} was unreadable: {exc})"
        if job.id != folder.name:
            raise ValueError(f"its {RECORD_FILE} is for job {job.id!r}, not {folder.name!r}")
        return _settle(folder, job), RECORD_FILE
    return _rebuild(folder), "bundle"


def _rebuild(folder: Path) -> JobRow:
    """A job from before record files (or whose record is unreadable): its spec from the bundle, its submitter from
    the signer's certificate, its status from what the folder holds."""
    from cryptography import x509

    from flctl.node.errors import JobError
    from flctl.node.jobs.bundle import extract_bundle
    from flctl.node.jobs.job_spec import load_job
    from flctl.provisioner import pki

    bundle = (folder / "bundle.zip").read_bytes()
    signed = json.loads((folder / "signature.json").read_text())
    who = pki.identity_of(x509.load_pem_x509_certificate(str(signed["signer_cert_pem"]).encode()))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            extract_bundle(bundle, Path(tmp) / "job")
            loaded = load_job(Path(tmp) / "job", shown=f"{folder.name}/bundle.zip")
        except JobError as exc:
            raise ValueError(f"its bundle no longer holds a valid job: {exc}") from None
    spec = loaded.spec
    run = RUN_PLAN.decode((folder / "run.json").read_bytes()) if (folder / "run.json").is_file() else None
    submitted = (folder / "bundle.zip").stat().st_mtime
    job = JobRow(folder.name, spec.name, JobStatus.SUBMITTED, who.name, who.org, who.role or "", submitted, 0.0, 0.0,
                 -1, int(getattr(loaded.args, "rounds", 0)), spec.workflow.type, spec.min_sites,
                 "all" if spec.sites == "all" else list(spec.sites), "", "", hashlib.sha256(bundle).hexdigest(),
                 spec.model_dump(mode="json"))
    if run is not None:
        job.status = JobStatus.RUNNING
        job.started_at = (folder / "run.json").stat().st_mtime
        job.site_states = {site: (SiteState.STARTING, -1, "") for site in run.sites}
        ended = (folder / "metrics.json").is_file()
        last = checkpoints.last_round(folder)
        if ended and last is not None and job.rounds and last >= job.rounds - 1:
            job.status, job.ended_at = JobStatus.FINISHED, (folder / "metrics.json").stat().st_mtime
            job.error = ""
        elif ended:
            job.status, job.ended_at = JobStatus.FAILED, (folder / "metrics.json").stat().st_mtime
            job.error = ("recovered from disk: the job had ended before its last round's model was saved; "
                         "why is not known (its record was lost with the database)")
    return _settle(folder, job)


def _settle(folder: Path, job: JobRow) -> JobRow:
    """A job that should run again but cannot (its signature is gone) fails, saying why; a running one without its
    sites' states gets them from run.json (so the server resumes it)."""
    if job.status in ENDED:
        return job
    if not (folder / "signature.json").is_file():
        job.status, job.ended_at = JobStatus.FAILED, time.time()
        job.error = "recovered from disk without its signature.json: it cannot be sent to sites; submit it again"
    elif job.status == JobStatus.RUNNING and not job.site_states and (folder / "run.json").is_file():
        sites = RUN_PLAN.decode((folder / "run.json").read_bytes()).sites
        job.site_states = {str(site): (SiteState.STARTING, -1, "") for site in sites}
    return job


def _restore(store: Store, folder: Path, job: JobRow, source: str) -> None:
    message = (f"rebuilt by `flctl node recover` from {folder} ({source}); its events before this point were lost "
               "with the damaged database")
    store.add_job(job, ("recovered", message, {"status": job.status, "source": source}))
    for site, (state, round_no, error) in job.site_states.items():
        store.set_site_state(job.id, site, state, round_no, error)
    if job.status in ENDED:
        _restore_results(store, folder, job.id)
    store.flush()


def _restore_results(store: Store, folder: Path, job_id: str) -> None:
    """An ended job's metrics and logs, from the files written when it ended."""
    if (folder / "metrics.json").is_file():
        by_site_round: dict[tuple[str, int], list[tuple[str, float, int | None]]] = {}
        for row in metrics_file.loads((folder / "metrics.json").read_text()):
            step = row.get("step")
            by_site_round.setdefault((str(row["site"]), int(row["round"])), []).append(
                (str(row["name"]), float(row["value"]), None if step is None else int(step)))
        when = (folder / "metrics.json").stat().st_mtime
        for (site, round_no), values in by_site_round.items():
            store.add_metrics(job_id, site, round_no, values, when=when)
    for log_file in sorted((folder / "logs").glob("*.log")):
        lines = []
        for text in log_file.read_text(errors="replace").splitlines():
            try:
                lines.append((time.mktime(time.strptime(text[:19], "%Y-%m-%d %H:%M:%S")), text[20:]))
            except ValueError:
                lines.append((log_file.stat().st_mtime, text))
        store.add_logs(job_id, log_file.stem, lines)
