"""Batch scripts that run a project's sites as Slurm jobs, as pure functions: the kits in, script texts out.

A site on an HPC cluster is a long-running Slurm job on one node: `#SBATCH` asks for what its kit's
`local/resources.yml` says (`cpus`, `memory_mb`, `gpus` as `--gres=gpu:N`), the script starts
`flctl node start KIT` from the kit on the shared file system, and forwards SIGTERM (sent by `scancel`, or by
Slurm 60 s before the time limit, `--signal=B:TERM@60`) so the site ends its jobs and stops cleanly;
`--requeue` lets the cluster start it again after a node failure. The server does not run under Slurm: sites
dial the name in their kits, which a batch node does not have. The kits are read where they are (never copied).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from flctl.cloud.deploy_errors import DeployInputError
from flctl.cloud.project_kits import NodeKit, ProjectKits

_TIME = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){1,2}|\d+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_CPUS = 2


@dataclass(frozen=True)
class SlurmOptions:
    """The `#SBATCH` settings the cluster's operators choose (None: the cluster's default)."""

    time: str = "7-00:00:00"
    partition: str | None = None
    account: str | None = None
    flctl: str = "flctl"  # the flctl the batch nodes run (a venv on the shared file system)

    def check(self) -> None:
        if not _TIME.fullmatch(self.time):
            raise DeployInputError(f"[--time] '{self.time}' is not a Slurm time limit (MINUTES, HH:MM:SS or "
                                   "D-HH:MM:SS)")
        for field, value in (("--partition", self.partition), ("--account", self.account)):
            if value is not None and not _NAME.fullmatch(value):
                raise DeployInputError(f"[{field}] '{value}' is not a Slurm name (letters, digits, '_', '.', '-')")


def site_script(kits: ProjectKits, site: NodeKit, options: SlurmOptions, logs: Path) -> str:
    """The batch script of `site`."""
    limits = site.limits
    lines = [f"--job-name=flctl-{kits.project}-{site.name}", "--nodes=1", "--ntasks=1",
             f"--cpus-per-task={max(1, round(limits.cpus)) if limits.cpus else DEFAULT_CPUS}",
             f"--time={options.time}", f"--output={logs}/%x-%j.out", "--signal=B:TERM@60", "--requeue"]
    if limits.memory_mb:
        lines.append(f"--mem={limits.memory_mb}M")
    if limits.gpus:
        lines.append(f"--gres=gpu:{limits.gpus}")
    if options.partition:
        lines.append(f"--partition={options.partition}")
    if options.account:
        lines.append(f"--account={options.account}")
    header = "".join(f"#SBATCH {line}\n" for line in lines)
    kit = shlex.quote(str(site.path.resolve()))
    workspace = shlex.quote(str(site.path.resolve().parent / f"workspace-{site.name}"))
    return f"""#!/bin/bash
# Written by `flctl deploy slurm`: the flctl site {site.participant} of project {kits.project}, as one Slurm job.
# Submit with `sbatch` (or submit.sh); stop with `scancel`, which the site takes as a clean stop.
{header}set -euo pipefail
KIT={kit}
WORKSPACE="${{FLCTL_WORKSPACE:-{workspace}}}"
FLCTL="${{FLCTL:-{shlex.quote(options.flctl)}}}"
"$FLCTL" node start "$KIT" --workspace "$WORKSPACE" &
site=$!
trap 'kill -TERM "$site" 2>/dev/null; wait "$site"; exit 0' TERM INT
wait "$site"
"""


def scripts(kits: ProjectKits, options: SlurmOptions, logs: Path) -> dict[str, str]:
    """Every site's script (`NAME.sbatch`) and `submit.sh`, which submits them all."""
    options.check()
    out = {f"{site.name}.sbatch": site_script(kits, site, options, logs) for site in kits.sites}
    submit = "".join(f'sbatch "$here/{name}"\n' for name in out)
    out["submit.sh"] = ("#!/bin/bash\n# Submit every site of the project to Slurm.\nset -euo pipefail\n"
                        f'here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"\nmkdir -p {shlex.quote(str(logs))}\n'
                        + submit)
    return out
