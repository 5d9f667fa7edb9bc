"""`flctl job submit JOB --model-from JOB_ID`: the job as it is, but for job.yml's `initial_model: job:JOB_ID` (a
finished job's final model, which the server resolves at submit: `flctl.node.jobs.initial_model`).

The job's own folder is never changed: its files are linked (copied where a link cannot be made) into a scratch
folder, with a job.yml whose top-level `initial_model:` line is replaced (or added). What is packed and signed is
that copy, so the bundle says which model the job runs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from flctl.node.jobs.bundle import JOB_FILE, job_entries
from flctl.node.jobs.initial_model import JOB_PREFIX, parse

_INITIAL_MODEL = re.compile(r"^initial_model:.*$", re.MULTILINE)


def set_initial_model(text: str, value: str) -> str:
    """job.yml's `text` with its top-level `initial_model` set to `value` (pure): the line replaced, else added."""
    line = f"initial_model: {value}"
    if _INITIAL_MODEL.search(text):
        return _INITIAL_MODEL.sub(line, text, count=1)
    return f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{line}\n"


def with_model_from(job: Path, job_id: str, scratch: Path) -> Path:
    """A copy of the job at `job` (a folder, or a job file with app/ beside it) in `scratch`, whose job.yml says
    `initial_model: job:<job_id>`; the copy's folder. ValueError when `job_id` cannot name a job."""
    value = f"{JOB_PREFIX}{job_id}"
    parse(value)  # ValueError saying what a job id may be
    folder = scratch / "job"
    for name, real in job_entries(job):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == JOB_FILE:
            target.write_text(set_initial_model(real.read_text(), value))
            continue
        try:
            os.link(real, target)
        except OSError:
            shutil.copyfile(real, target)
    return folder
