"""Batch scripts that run a project's server and sites as Slurm jobs, as pure functions: the kits in, texts out.

A node on an HPC cluster is a long-running Slurm job on one node: `#SBATCH` asks for what its kit's
`local/resources.yml` says (`cpus`, `memory_mb`, `gpus` as `--gres=gpu:N`), the script starts
`flctl node start KIT` from the kit on the shared file system, and takes SIGTERM (sent by `scancel`) as a clean
stop: the node ends its jobs and stops. Near the time limit Slurm sends SIGUSR1 (`--signal=B:USR1@SECONDS`): the
script stops the node cleanly the same way and requeues its own job (`scontrol requeue`, which `--requeue`
allows), so the node comes back under the same job id; `--requeue` also starts it again after a node failure.

The server runs under Slurm only when asked (`server=True`): sites dial the name in their kits, so its job is
pinned with `--nodelist` to the cluster node that name reaches (`server_node`). Without it the server runs
elsewhere. The kits are read where they are (never copied). `slurm.json` records what was written, for
`flctl deploy slurm submit|status|stop` (flctl.cloud.slurm_jobs).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePath

from flctl.cloud.deploy_errors import DeployInputError
from flctl.cloud.project_kits import NodeKit, ProjectKits

_TIME = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){1,2}|\d+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_CPUS = 2
REQUEUE_WARNING_S = 120
"""How long before its time limit a node's job is told (SIGUSR1) to stop and requeue itself. Slurm sends it up to
a minute early (its timer runs once a minute), so the clean stop always has at least a minute."""
MANIFEST = "slurm.json"
SUBMIT = "submit.sh"
LOGS_README = "logs/README"


@dataclass(frozen=True)
class SlurmOptions:
    """The `#SBATCH` settings the cluster's operators choose (None: the cluster's default)."""

    time: str = "7-00:00:00"
    partition: str | None = None
    account: str | None = None
    flctl: str = "flctl"  # the flctl the batch nodes run (a venv on the shared file system)
    server: bool = False  # run the server as a job too, pinned to `server_node`
    server_node: str | None = None  # default: the first label of the server's name in the kits

    def check(self) -> None:
        if not _TIME.fullmatch(self.time):
            raise DeployInputError(f"[--time] '{self.time}' is not a Slurm time limit (MINUTES, HH:MM:SS or "
                                   "D-HH:MM:SS)")
        for field, value in (("--partition", self.partition), ("--account", self.account),
                             ("--server-node", self.server_node)):
            if value is not None and not _NAME.fullmatch(value):
                raise DeployInputError(f"[{field}] '{value}' is not a Slurm name (letters, digits, '_', '.', '-')")
        if self.server_node is not None and not self.server:
            raise DeployInputError("[--server-node] needs --server (the server's job is pinned to that node)")


def job_name(kits: ProjectKits, node: NodeKit) -> str:
    """The Slurm job name of `node`: what `squeue --name` and `scancel --name` find it by."""
    return f"flctl-{kits.project}-{node.name}"


def server_node(kits: ProjectKits, options: SlurmOptions) -> str:
    """The cluster node the server's job is pinned to: the one its kits' name reaches."""
    node = options.server_node or kits.server_host.split(".", 1)[0]
    if not _NAME.fullmatch(node):
        raise DeployInputError(f"[--server-node] the server's name '{kits.server_host}' gives no Slurm node "
                               "name; pass --server-node NODE")
    return node


def node_script(kits: ProjectKits, node: NodeKit, options: SlurmOptions, logs: PurePath,
                kit: PurePath | None = None) -> str:
    """The batch script of `node` (the server or a site), whose kit lies at `kit` (default: where it is here)."""
    limits = node.limits
    lines = [f"--job-name={job_name(kits, node)}", "--nodes=1", "--ntasks=1",
             f"--cpus-per-task={max(1, round(limits.cpus)) if limits.cpus else DEFAULT_CPUS}",
             f"--time={options.time}", f"--output={logs}/%x-%j.out", "--open-mode=append",
             f"--signal=B:USR1@{REQUEUE_WARNING_S}", "--requeue"]
    if limits.memory_mb:
        lines.append(f"--mem={limits.memory_mb}M")
    if limits.gpus:
        lines.append(f"--gres=gpu:{limits.gpus}")
    if node.kind == "server":
        lines.append(f"--nodelist={server_node(kits, options)}")
    if options.partition:
        lines.append(f"--partition={options.partition}")
    if options.account:
        lines.append(f"--account={options.account}")
    header = "".join(f"#SBATCH {line}\n" for line in lines)
    kit_path = kit if kit is not None else node.path.resolve()
    workspace = shlex.quote(str(kit_path.parent / f"workspace-{node.name}"))
    what = "server" if node.kind == "server" else "site"
    return f"""#!/bin/bash
# Written by `flctl deploy slurm`: the flctl {what} {node.participant} of project {kits.project}, as one Slurm job.
# Submit with submit.sh (or `flctl deploy slurm submit`); stop with `scancel` (or `flctl deploy slurm stop`),
# which the node takes as a clean stop. Near the time limit (SIGUSR1) it stops cleanly and requeues this job.
{header}set -euo pipefail
KIT={shlex.quote(str(kit_path))}
WORKSPACE="${{FLCTL_WORKSPACE:-{workspace}}}"
FLCTL="${{FLCTL:-{shlex.quote(options.flctl)}}}"
echo "flctl: {what} {node.participant} starting on $(hostname)" \\
  "(job ${{SLURM_JOB_ID:-?}}, restart ${{SLURM_RESTART_COUNT:-0}})"
"$FLCTL" node start "$KIT" --workspace "$WORKSPACE" &
node=$!
ending=""
trap 'ending=stop; kill -TERM "$node" 2>/dev/null || true' TERM INT
trap 'ending=requeue; kill -TERM "$node" 2>/dev/null || true' USR1
while :; do  # a trapped signal interrupts `wait`: wait again until the node has ended
  code=0; wait "$node" || code=$?
  kill -0 "$node" 2>/dev/null || break
done
echo "flctl: {what} {node.participant} stopped (exit $code)"
if [ "$ending" = requeue ]; then
  echo "flctl: the time limit is near: requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$code"
"""


def scripts(kits: ProjectKits, options: SlurmOptions, logs: PurePath,
            kit_root: PurePath | None = None) -> dict[str, str]:
    """Every node's script (`NAME.sbatch`: the server's with `options.server`), `submit.sh`, which submits them
    all (the server first, the sites once it has started), and the manifest `slurm.json`. With `kit_root`, the
    kits are read from there (`kit_root/<kit folder>`: a copy on the cluster's shared file system)."""
    options.check()
    nodes = kits.nodes if options.server else kits.sites
    out = {f"{node.name}.sbatch": node_script(kits, node, options, logs,
                                              None if kit_root is None else kit_root / node.path.name)
           for node in nodes}
    lines = ["#!/bin/bash", "# Submit the project's nodes to Slurm: the server first, then each site once the "
             "server's job has started.", "set -euo pipefail",
             'here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"', f"mkdir -p {shlex.quote(str(logs))}"]
    after = ""
    if options.server:
        lines.append(f'server="$(sbatch --parsable "$here/{kits.server.name}.sbatch")"; server="${{server%%;*}}"')
        lines.append('echo "server job $server"')
        after = '--dependency="after:$server" '
    lines += [f'sbatch {after}"$here/{site.name}.sbatch"' for site in kits.sites]
    out[SUBMIT] = "\n".join(lines) + "\n"
    manifest = {"project": kits.project, "prod": str(kit_root or kits.prod.resolve()), "logs": str(logs),
                "nodes": [{"participant": n.participant, "kind": n.kind, "script": f"{n.name}.sbatch",
                           "job_name": job_name(kits, n)} for n in nodes]}
    out[MANIFEST] = json.dumps(manifest, indent=2) + "\n"
    # The logs folder exists from the start: Slurm cannot make it, and a job whose --output folder is missing
    # fails at once, writing nothing (a script submitted with plain `sbatch`).
    out[LOGS_README] = "Slurm writes each job's output here: NAME-JOBID.out, appended across requeues.\n"
    return out
