"""The site job link: how the site daemon (`agent`) hands a job to its process (`job_process`), and what comes back.

The daemon hands the job over as the process's arguments, `SiteJob.argv()` (KIT JOB_DIR JOB_ID;
to a spare job process, inside its `JobHandoff`). The job process talks to the server itself
(gRPC), not to its daemon: what comes back is its exit code, and `JOB_DIR/script.pgid`, the
process group of the training script, which the daemon ends when the job process could not.
Before it starts the job process, the daemon writes what the job was given at this site, `JOB_DIR/placement.json`
(`JobPlacement`: the cores to pin it to, its CUDA_VISIBLE_DEVICES), which the job process applies to its script.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flctl.node.process.links import LinkError
from flctl.node.security.path_names import BadName, check_path_name

LINK = "site job link"
SCRIPT_GROUP_FILE = "script.pgid"
PLACEMENT_FILE = "placement.json"


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


@dataclass(frozen=True)
class JobPlacement:
    """What a job was given at this site (`flctl.node.site.placement`), as its job process applies it."""

    cpus: tuple[int, ...] = ()
    """The cores its processes are pinned to; (): not pinned (it asked no cpus)."""
    cuda_visible_devices: str | None = None
    """Its script's CUDA_VISIBLE_DEVICES ("0,1"; "": no GPU); None: left as the site's environment makes it."""

    def script_env(self) -> dict[str, str]:
        """The variables the script gets for its GPUs (after the job's own: it cannot name others')."""
        if self.cuda_visible_devices is None:
            return {}
        return {"CUDA_VISIBLE_DEVICES": self.cuda_visible_devices, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def write_placement(job_dir: Path, placement: JobPlacement) -> None:
    """In the daemon, before the job process starts."""
    (job_dir / PLACEMENT_FILE).write_text(json.dumps({"cpus": list(placement.cpus),
                                                      "cuda_visible_devices": placement.cuda_visible_devices}))


def read_placement(job_dir: Path) -> JobPlacement:
    """In the job process: what the daemon wrote; nothing placed when there is no file. `LinkError` when it holds
    anything else than what `write_placement` writes."""
    try:
        data = json.loads((job_dir / PLACEMENT_FILE).read_text())
    except FileNotFoundError:
        return JobPlacement()
    except (OSError, ValueError) as exc:
        raise LinkError(LINK, f"{job_dir / PLACEMENT_FILE} cannot be read: {exc}") from None
    cpus, visible = (data.get("cpus"), data.get("cuda_visible_devices")) if isinstance(data, dict) else (None, 0)
    if not isinstance(cpus, list) or not all(isinstance(c, int) and c >= 0 for c in cpus) or \
            not (visible is None or isinstance(visible, str)):
        raise LinkError(LINK, f"{job_dir / PLACEMENT_FILE} holds {str(data)[:80]!r}, not a placement")
    return JobPlacement(tuple(cpus), visible)
