"""The site job link: how the site daemon (`agent`) hands a job to its process (`job_process`), and what comes back.

The daemon hands the job over as the process's arguments, `SiteJob.argv()` (KIT JOB_DIR JOB_ID;
to a spare job process, inside its `JobHandoff`). The job process talks to the server itself
(gRPC), not to its daemon: what comes back is its exit code, and `JOB_DIR/script.pgid`, the
process group of the training script, which the daemon ends when the job process could not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flctl.node.process.links import LinkError
from flctl.node.security.path_names import BadName, check_path_name

LINK = "site job link"
SCRIPT_GROUP_FILE = "script.pgid"


@dataclass(frozen=True)
class SiteJob:
    """The job a site's job process runs: the site's kit, the job's folder, and the job's id (a folder name)."""

    kit_root: Path
    job_dir: Path
    job_id: str

    def argv(self) -> list[str]:
        return [str(self.kit_root), str(self.job_dir), self.job_id]

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> SiteJob:
        """The job `argv` names; `LinkError` when it is not KIT JOB_DIR JOB_ID, or the job id is not a safe name."""
        if len(argv) != 3:
            raise LinkError(LINK, f"expected KIT JOB_DIR JOB_ID, got {list(argv)!r}")
        try:
            job_id = check_path_name(argv[2], "job id")
        except BadName as exc:
            raise LinkError(LINK, str(exc)) from None
        return cls(Path(argv[0]), Path(argv[1]), job_id)


def write_script_group(job_dir: Path, pgid: int) -> None:
    """In the job process: record the training script's process group for the daemon."""
    (job_dir / SCRIPT_GROUP_FILE).write_text(f"{pgid}\n")


def read_script_group(job_dir: Path, log: logging.Logger) -> int | None:
    """In the daemon: the training script's process group, or None when none was recorded (or it is refused, which
    is logged)."""
    try:
        text = (job_dir / SCRIPT_GROUP_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    if not text.isdigit() or int(text) <= 1:
        log.warning("%s", LinkError(LINK, f"{job_dir / SCRIPT_GROUP_FILE} holds {text[:40]!r}, not a process group"))
        return None
    return int(text)
