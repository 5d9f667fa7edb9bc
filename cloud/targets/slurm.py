"""The slurm target: a participant's node as a batch job on an HPC cluster, reached through its login node over SSH.

The host's `address`, `port`, `user` and `key_file` are the login node's (host keys checked like an ssh host's);
its `install_dir` is a folder of the cluster's shared file system, which the login and the batch nodes both see.
`apply` rolls the participant's kit out there with its batch script (flctl.cloud.slurm_rollout, into
`INSTALL_DIR/PARTICIPANT/`, so hosts may share one folder), verifies the kit with the cluster's flctl and submits
the script with sbatch; `status` and `stop` are squeue and scancel; `logs` reads the job's output file. Every Slurm
command runs on the login node through the SSH connector (flctl.cloud.slurm_jobs with a runner over it). The
host's `slurm:` block is SlurmHost: the `#SBATCH` settings the cluster's operators choose.
"""

from __future__ import annotations

import dataclasses
import functools
import shlex
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field

from flctl.cloud.targets.base import Applied, Deployment, DeployTarget, Planned

if TYPE_CHECKING:
    from collections.abc import Callable

    from flctl.cloud.connector import Connector
    from flctl.cloud.deploy_executor import HostResult
    from flctl.cloud.deploy_state import DeploymentState, Record
    from flctl.cloud.inventory import HostSpec
    from flctl.cloud.project_kits import NodeKit, ProjectKits
    from flctl.cloud.slurm_jobs import NodeJob, Runner, SlurmFolder
    from flctl.cloud.slurm_rollout import SharedFolder
    from flctl.cloud.slurm_scripts import SlurmOptions

CONNECT_ATTEMPTS = 3
_SLURM_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SlurmHost(BaseModel):
    """`slurm:` — how the participant's node runs as a batch job (the login node is the host's address)."""

    model_config = {"extra": "forbid"}

    partition: str | None = Field(None, pattern=_SLURM_NAME, description="The partition [default: the cluster's].")
    account: str | None = Field(None, pattern=_SLURM_NAME, description="The account [default: the user's].")
    time_limit: str = Field("7-00:00:00", pattern=r"^((\d+-)?\d{1,2}(:\d{2}){1,2}|\d+)$",
                            description="The job's time limit (MINUTES, HH:MM:SS or D-HH:MM:SS); near it the node "
                            "stops cleanly and requeues its job.")
    gpus: int | None = Field(None, ge=0, le=64, description="GPUs to ask for (--gres=gpu:N) [default: the kit's "
                             "local/resources.yml].")
    flctl: str = Field("flctl", pattern=r"^[A-Za-z0-9_./-]+$", description="The flctl the login and batch nodes "
                       "run (e.g. a venv on the shared file system).")
    server_node: str | None = Field(None, pattern=_SLURM_NAME, description="The server's host only: the cluster "
                                    "node its job is pinned to [default: the first label of the server's name "
                                    "in the kits].")


class SlurmTarget(DeployTarget):
    """A batch job on a Slurm cluster: the kit on its shared file system, sbatch/squeue/scancel over SSH."""

    name: ClassVar[str] = "slurm"
    spec: ClassVar[type[BaseModel] | None] = SlurmHost
    required: ClassVar[dict[str, str]] = {"address": "'address' is required with provider: slurm: the cluster's "
                                                     "login node, reached over SSH"}
    summary: ClassVar[str] = """Run the inventory's `provider: slurm` hosts as Slurm batch jobs, through each
    cluster's login node over SSH.

    Per host: connect to the login node (`address`, host keys checked); write the participant's kit
    (keys 0600, a site's own local/ files kept) and its batch script (#SBATCH from the kit's
    local/resources.yml and the host's `slurm:` block; near the time limit the node stops cleanly and
    requeues its job) to INSTALL_DIR/PARTICIPANT on the shared file system; verify the kit there with
    slurm.flctl; submit it with sbatch (the server's job first). A host whose job is already queued is
    left alone (`flctl deploy upgrade INVENTORY` stops it cleanly, rolls out and submits again).
    `flctl deploy status|stop|logs INVENTORY` use squeue, scancel and the job's output file.
    """

    def where(self, host: HostSpec) -> str:
        return f"{host.address}:{host.install_dir}"

    def machine_of(self, host: HostSpec) -> str:
        """Each node has its own folder (INSTALL_DIR/PARTICIPANT): the hosts of one cluster may share install_dir."""
        return f"{host.address}/{host.participant}"

    def plan(self, deployment: Deployment, hosts: list[HostSpec]) -> Planned:
        """The steps per host; nothing is connected to."""
        from flctl.cloud.deploy_executor import HostResult

        out = []
        for host in _server_first(deployment, hosts):
            shared = _shared(host)
            out.append(HostResult(host.participant, host.address or "", host.port, "planned", changes=[
                f"write the kit and batch script to {shared.path}", f"verify the kit with {_block(host).flctl}",
                "sbatch the node's script (unless its job is queued)"]))
        return Planned(hosts=out)

    def apply(self, deployment: Deployment, hosts: list[HostSpec]) -> Applied:
        if not deployment.roll_out:
            return Applied()
        kits = _kits(deployment)
        ordered = _server_first(deployment, hosts)
        stopped: dict[str, HostResult] = {}
        if deployment.upgrade:  # every job stopped first, the sites before the server: none waits on a gone server
            stopped = {host.participant: self._each(deployment, host, lambda h, c: _stop_queued(deployment, kits,
                                                                                               h, c))
                       for host in reversed(ordered)}
        out = []
        for host in ordered:
            before = stopped.get(host.participant)
            if before is not None and not before.ok:
                out.append(before)
                continue
            done = before.changes if before is not None else []
            out.append(self._each(deployment, host, functools.partial(_apply, deployment, kits, changes=done)))
        return Applied(hosts=out)

    def status(self, deployment: Deployment, hosts: list[HostSpec]) -> list[HostResult]:
        kits = _kits(deployment)
        return [self._each(deployment, host, lambda h, c: _status(kits, h, c)) for host in hosts]

    def stop(self, deployment: Deployment, hosts: list[HostSpec]) -> list[HostResult]:
        """The sites' jobs first, then the server's: scancel's SIGTERM is each node's clean stop."""
        kits = _kits(deployment)
        return [self._each(deployment, host, lambda h, c: _stop(kits, h, c))
                for host in reversed(_server_first(deployment, hosts))]

    def logs(self, deployment: Deployment, host: HostSpec, lines: int) -> str:
        """The end of the newest output file of the host's job (Slurm appends across requeues)."""
        kits = _kits(deployment)
        folder = _folder(kits, host)
        name = folder.nodes[0].job_name
        with self.connector(deployment, host) as connector:
            pattern = f"{shlex.quote(str(folder.logs))}/{shlex.quote(name)}-*.out"
            text = connector.check(f'f="$(ls -t {pattern} 2>/dev/null | head -n 1)"; '
                                   f'if [ -n "$f" ]; then echo "==> $f <=="; tail -n {int(lines)} "$f"; fi',
                                   "reading the job's log")
        if not text:
            from flctl.cloud.deploy_errors import DeployError

            raise DeployError(f"{host.participant}: no output of job {name} in {folder.logs} on {host.address} "
                              f"yet; start it with `flctl deploy slurm {deployment.inventory.source}`")
        return text

    def destroy(self, deployment: Deployment, state: DeploymentState, records: list[Record]) -> list[
            tuple[Record, str]]:
        """Nothing: the target makes no resources (the kits stay on the shared file system)."""
        return []

    def connector(self, deployment: Deployment, host: HostSpec) -> Connector:
        from flctl.cloud.host_access import ssh_connector

        return ssh_connector(deployment.inventory, host, deployment.inventory.known_hosts,
                             deployment.accept_new_host_keys, CONNECT_ATTEMPTS)

    def _each(self, deployment: Deployment, host: HostSpec,
              work: Callable[[HostSpec, Connector], HostResult]) -> HostResult:
        """`work` over a session with the host's login node; a DeployError becomes the host's failed result."""
        from flctl.cloud.deploy_errors import DeployError
        from flctl.cloud.deploy_executor import HostResult

        progress = deployment.progress
        started = time.monotonic()
        try:
            with self.connector(deployment, host) as connector:
                if progress is not None:
                    progress.host_connected(host)
                result = work(host, connector)
        except DeployError as error:
            if progress is not None:
                progress.host_failed(host, error)
            result = HostResult(host.participant, host.address or "", host.port, "failed", ok=False,
                                reason=error.reason, message=str(error))
        result.seconds = round(time.monotonic() - started, 1)
        if progress is not None:
            progress.host_done(result)
        return result


def _block(host: HostSpec) -> SlurmHost:
    return host.block_as(SlurmHost)


def _shared(host: HostSpec) -> SharedFolder:
    """The host's own folder on the shared file system: INSTALL_DIR/PARTICIPANT (kits/ and slurm/ in it)."""
    from flctl.cloud.slurm_rollout import SharedFolder

    return SharedFolder(host.user, host.address or "", PurePosixPath(host.install_dir) / host.participant)


def _kits(deployment: Deployment) -> ProjectKits:
    from flctl.cloud.project_kits import load_project_kits

    return load_project_kits(deployment.inventory.kits)


def _server_first(deployment: Deployment, hosts: list[HostSpec]) -> list[HostSpec]:
    from flctl.provisioner.errors import ProvisionError
    from flctl.provisioner.kit_info import read_kit

    def serves(host: HostSpec) -> bool:
        try:
            return read_kit(deployment.inventory.kit(host.participant)).kind == "server"
        except (ProvisionError, OSError):
            return False

    return sorted(hosts, key=lambda h: not serves(h))


def _node(kits: ProjectKits, host: HostSpec) -> NodeKit:
    from flctl.cloud.deploy_errors import DeployInputError

    for node in kits.nodes:
        if node.participant == host.participant:
            return node
    raise DeployInputError(f"[participant] {host.participant} has no server or site kit in {kits.prod}")


def _project(kits: ProjectKits, host: HostSpec) -> tuple[ProjectKits, SlurmOptions]:
    """The project cut down to the host's node (the server stays first: the scripts need its name), with its
    `#SBATCH` options: the block's gpus replace the kit's."""
    from flctl.cloud.slurm_scripts import SlurmOptions

    block = _block(host)
    node = _node(kits, host)
    if block.gpus is not None:
        node = dataclasses.replace(node, limits=dataclasses.replace(node.limits, gpus=block.gpus))
    server = node.kind == "server"
    nodes = [node] if server else [kits.server, node]
    options = SlurmOptions(block.time_limit, block.partition, block.account, block.flctl, server,
                           block.server_node if server else None)
    return dataclasses.replace(kits, nodes=nodes), options


def _folder(kits: ProjectKits, host: HostSpec) -> SlurmFolder:
    """The host's slurm/ folder on the cluster, as flctl.cloud.slurm_jobs reads one: its one node."""
    from flctl.cloud.slurm_jobs import NodeEntry, SlurmFolder
    from flctl.cloud.slurm_scripts import job_name

    node = _node(kits, host)
    slurm = _shared(host).slurm
    return SlurmFolder(Path(str(slurm)), kits.project, Path(str(slurm / "logs")),
                       [NodeEntry(node.participant, node.kind, f"{node.name}.sbatch", job_name(kits, node))])


def runner(connector: Connector) -> Runner:
    """Run a Slurm command on the login node: its stdout; exit 3 when Slurm is missing or its controller silent."""
    from flctl.cloud import slurm_jobs
    from flctl.cloud.deploy_errors import SchedulerUnreachable

    def run(argv: list[str]) -> str:
        done = connector.run(shlex.join(argv), timeout_s=90)
        if done.exit_code == 127:
            raise SchedulerUnreachable(f"{argv[0]} is not installed on {connector.name}'s login node")
        return slurm_jobs.answer(argv, done.exit_code, done.stdout, done.stderr)

    return run


def _result(host: HostSpec, job: NodeJob, status: str, ok: bool, changes: list[str] | None = None,
            message: str = "") -> HostResult:
    from flctl.cloud.deploy_executor import HostResult

    where = f"job {job.job_id} {job.state}" + (f" on {job.node}" if job.node else "") if job.job_id else job.state
    return HostResult(host.participant, host.address or "", host.port, status, ok=ok, changes=changes or [],
                      reason="" if ok else "not running", message=message or f"{where}")


def _stop_queued(deployment: Deployment, kits: ProjectKits, host: HostSpec, connector: Connector) -> HostResult:
    """Upgrade's first half: the host's queued job stopped cleanly; a host with none is refused."""
    from flctl.cloud import slurm_jobs
    from flctl.cloud.deploy_errors import DeployError

    job = slurm_jobs.stop(_folder(kits, host), 240, runner(connector), host.user)[0]
    if not job.job_id:
        raise DeployError(f"{host.participant}: no job of it is queued on {host.address}; run `flctl deploy "
                          f"slurm {deployment.inventory.source}` first")
    return _result(host, job, "stopped", True, changes=[f"job {job.job_id} stopped"])


def _apply(deployment: Deployment, kits: ProjectKits, host: HostSpec, connector: Connector,
           changes: list[str]) -> HostResult:
    """The kit and script rolled out and submitted; a host whose job is queued is left alone."""
    from flctl.cloud import slurm_jobs
    from flctl.cloud.slurm_rollout import rollout

    folder = _folder(kits, host)
    run = runner(connector)
    queued = slurm_jobs.status(folder, run, host.user)[0]
    if queued.job_id:
        return _result(host, queued, "unchanged", True, message=f"job {queued.job_id} is {queued.state}; "
                       f"`flctl deploy upgrade {deployment.inventory.source}` rolls the kit out again")
    project, options = _project(kits, host)
    done = rollout(project, options, _shared(host), connector)
    job = slurm_jobs.submit(folder, run, host.user)[0]
    return _result(host, job, "deployed", True, changes=[
        *changes, f"{len(done.written)} files written to {_shared(host).path}"
        + (f", {len(done.kept)} site-owned kept" if done.kept else ""),
        f"kit verified with {options.flctl}", f"job {job.job_id} submitted"], message=f"job {job.job_id} submitted")


def _status(kits: ProjectKits, host: HostSpec, connector: Connector) -> HostResult:
    from flctl.cloud import slurm_jobs

    job = slurm_jobs.status(_folder(kits, host), runner(connector), host.user)[0]
    return _result(host, job, "running" if job.running else "not running", job.running)


def _stop(kits: ProjectKits, host: HostSpec, connector: Connector) -> HostResult:
    from flctl.cloud import slurm_jobs

    job = slurm_jobs.stop(_folder(kits, host), 240, runner(connector), host.user)[0]
    return _result(host, job, "stopped", True, message=f"job {job.job_id} cancelled" if job.job_id else
                   "no job queued")
