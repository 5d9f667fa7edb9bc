"""Where a site keeps the intersections its `psi` jobs found, so a later job (vertical learning) can read them.

A job's script may write only its own job workspace (`<site workspace>/jobs/<job id>/job/`) and read no other
job's, so the site daemon carries the result from one job to the next:

- when a `psi` job's process ends at the site, the daemon keeps the `psi/intersection.txt` the job wrote as
  `<site workspace>/psi/<job name>/intersection.txt` (the latest run of that name wins);
- when a job whose job.yml says `psi_job: NAME` starts, the daemon copies that file to `psi/intersection.txt` in
  the new job's workspace before its script starts, or refuses the job when it has none.

The file is the site's own: it never leaves the site.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flctl.node.client.psi import RESULT_FILE
from flctl.node.jobs.job_spec import JobSpec

FOLDER = "psi"
"""The folder of the site's workspace that holds one folder per psi job name."""
MAX_BYTES = 1 << 30
"""The largest intersection file kept (a billion bytes: tens of millions of IDs)."""


def kept_path(site_workspace: Path, psi_job: str) -> Path:
    """Where the intersection of the psi job named `psi_job` is kept at this site."""
    return site_workspace / FOLDER / psi_job / RESULT_FILE.name


def keep(site_workspace: Path, job_folder: Path, spec: JobSpec) -> Path | None:
    """After a job's process ended: keep the intersection a `psi` job wrote in `job_folder` (its workspace); the
    path kept, or None (not a psi job, or it wrote none: its part failed). A link or an oversized file is not
    followed nor kept."""
    if spec.workflow.type != "psi":
        return None
    written = job_folder / RESULT_FILE
    if written.is_symlink() or not written.is_file() or written.stat().st_size > MAX_BYTES:
        return None
    target = kept_path(site_workspace, spec.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with open(written, "rb") as source, open(partial, "wb") as out:
        shutil.copyfileobj(source, out)
        os.fsync(out.fileno())
    partial.replace(target)
    return target


def hand_over(site_workspace: Path, job_folder: Path, spec: JobSpec) -> str:
    """Before a job's script starts: give it the intersection its `psi_job` names, as `psi/intersection.txt` in
    `job_folder`; '' when done (or the job names none), else why the site refuses the job."""
    if not spec.psi_job:
        return ""
    kept = kept_path(site_workspace, spec.psi_job)
    if not kept.is_file():
        return (f"it has no intersection from a psi job named {spec.psi_job!r} (job.yml psi_job); run that job at "
                "this site first")
    target = job_folder / RESULT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kept, target)
    return ""
