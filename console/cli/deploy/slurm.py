"""`flctl deploy slurm PROJECT_WORKSPACE -o DIR [...]` (`scripts`, the default), then `submit|status|stop DIR`;
`flctl deploy slurm INVENTORY.yml` is `apply`, the slurm deploy target's command (flctl.cloud.targets.slurm)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.deploy.k8s import ForceOption, OutOption, WorkspaceArg
from flctl.console.cli.deploy.run import AcceptNewOption
from flctl.console.cli.options import JsonOption

if TYPE_CHECKING:
    from flctl.cloud.slurm_jobs import NodeJob

SUMMARY = ("Run the federation's nodes as Slurm jobs: `flctl deploy slurm INVENTORY.yml` (apply) rolls the "
           "inventory's `provider: slurm` hosts out and submits them over SSH (then `flctl deploy status|stop|logs "
           "INVENTORY`); `flctl deploy slurm PROJECT_WORKSPACE -o DIR` writes the batch scripts; then submit, status "
           "and stop DIR; rollout copies kits and scripts to the shared file system over SSH.")
DirArg = Annotated[Path, typer.Argument(metavar="DIR", help="The folder `flctl deploy slurm PROJECT_WORKSPACE -o "
                                        "DIR` wrote.", file_okay=False)]
HEADERS = ["participant", "kind", "job", "state", "node", "time", "time left", "reason"]


def command(
    workspace: WorkspaceArg,
    out: OutOption,
    time: Annotated[str, typer.Option(help="Each job's time limit (D-HH:MM:SS); near it a node stops cleanly "
                                           "and requeues its job.")] = "7-00:00:00",
    partition: Annotated[str | None, typer.Option(help="The partition [default: the cluster's].")] = None,
    account: Annotated[str | None, typer.Option(help="The account [default: yours].")] = None,
    flctl: Annotated[str, typer.Option("--flctl", help="The flctl the batch nodes run (e.g. a venv on the "
                                                       "shared file system).")] = "flctl",
    server: Annotated[bool, typer.Option("--server", help="Run the server as a job too, pinned to the cluster "
                                                          "node its kits' name reaches.")] = False,
    server_node: Annotated[str | None, typer.Option(help="The node the server's job is pinned to (with "
                                                         "--server) [default: the first label of the "
                                                         "server's name].")] = None,
    force: ForceOption = False,
    json_out: JsonOption = False,
) -> None:
    """Write one Slurm batch script per site (and the server's with --server), submit.sh and slurm.json.

    Each script asks for what the node's local/resources.yml says (cpus, memory_mb, gpus as
    --gres), starts `flctl node start` from the kit where it lies on the shared file system, and
    takes scancel as a clean stop. Near the time limit (SIGUSR1) it stops cleanly and requeues its
    own job; --requeue also restarts it after a node failure. Without --server the server runs
    elsewhere (its kits' name must be reachable from the batch nodes). Every kit is verified
    first; bad input is refused with exit 2 and nothing is written.
    """
    from flctl.cloud.deploy_output import write_tree
    from flctl.cloud.project_kits import load_project_kits
    from flctl.cloud.slurm_scripts import SUBMIT, SlurmOptions, scripts

    kits = load_project_kits(workspace)
    files = scripts(kits, SlurmOptions(time, partition, account, flctl, server, server_node),
                    out.resolve() / "logs")
    write_tree(out, {name: text.encode() for name, text in files.items()}, replace=force)
    if json_out:
        terminal.print_json({"out": str(out), "prod": str(kits.prod),
                             "scripts": sorted(n for n in files if n.endswith(".sbatch"))})
        return
    if kits.server_host in ("localhost", "127.0.0.1", "::1"):
        terminal.warning(f"the kits name the server {kits.server_host}: a batch node reaches only itself there; "
                         "provision with the server's name as the cluster's nodes reach it")
    count = sum(n.endswith(".sbatch") for n in files)
    terminal.success(f"wrote {count} batch scripts and {SUBMIT} to {out}; submit: flctl deploy slurm submit {out} "
                     f"(or bash {out}/{SUBMIT})")


def rollout(
    workspace: WorkspaceArg,
    to: Annotated[str, typer.Option("--to", metavar="[USER@]HOST:/PATH", help="The cluster's login node and a "
                                    "folder of its shared file system.")],
    port: Annotated[int, typer.Option(help="The login node's SSH port.")] = 22,
    key: Annotated[Path | None, typer.Option("--key", dir_okay=False, help="The SSH private key [default: the "
                                             "SSH agent's keys].")] = None,
    known_hosts: Annotated[Path, typer.Option(dir_okay=False, help="The known_hosts file.")] =
        Path("~/.ssh/known_hosts"),
    accept_new_host_keys: AcceptNewOption = False,
    time: Annotated[str, typer.Option(help="Each job's time limit (D-HH:MM:SS).")] = "7-00:00:00",
    partition: Annotated[str | None, typer.Option(help="The partition [default: the cluster's].")] = None,
    account: Annotated[str | None, typer.Option(help="The account [default: yours].")] = None,
    flctl: Annotated[str, typer.Option("--flctl", help="The flctl the login and batch nodes run (e.g. a venv on "
                                                       "the shared file system).")] = "flctl",
    server: Annotated[bool, typer.Option("--server", help="Run the server as a job too.")] = False,
    server_node: Annotated[str | None, typer.Option(help="The node the server's job is pinned to.")] = None,
    submit_jobs: Annotated[bool, typer.Option("--submit", help="Then submit the jobs on the login node.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Copy the kits and the batch scripts to the cluster's shared file system over SSH, then (--submit) submit.

    PATH/kits/ gets each site's kit (the server's with --server; never an admin's): keys 0600, each
    kit's folder 0700; a kit's local/ files are written only where missing (the site owns them).
    PATH/slurm/ gets the scripts, submit.sh and slurm.json, reading the kits there. Each kit is then
    checked on the login node with --flctl (`flctl kit verify`). Then, on the login node: `flctl
    deploy slurm status|stop PATH/slurm`. Unreachable or refused SSH: exit 3; bad input: exit 2.
    """
    from flctl.cloud.project_kits import load_project_kits
    from flctl.cloud.slurm_rollout import SharedFolder
    from flctl.cloud.slurm_rollout import rollout as roll_out
    from flctl.cloud.slurm_scripts import SlurmOptions
    from flctl.cloud.ssh_connector import SshConnector, SshOptions

    shared = SharedFolder.parse(to)
    options = SlurmOptions(time, partition, account, flctl, server, server_node)
    options.check()
    kits = load_project_kits(workspace)
    ssh = SshOptions(shared.host, port, shared.user or _local_user(), key, known_hosts.expanduser(),
                     accept_new_host_keys)
    with SshConnector(ssh) as connector:
        result = roll_out(kits, options, shared, connector, submit_jobs)
    if json_out:
        terminal.print_json({"host": shared.host, "path": str(shared.path), "kits": result.kits,
                             "written": result.written, "kept": result.kept, "jobs": result.jobs})
        return
    terminal.success(f"{len(result.kits)} kits verified in {shared.kits} on {shared.host}; {len(result.written)} "
                     f"files written, {len(result.kept)} site-owned kept")
    if result.jobs:
        terminal.table(["participant", "job"], [[j["participant"], j["job_id"]] for j in result.jobs],
                       title="submitted")
    else:
        terminal.success(f"submit there: flctl deploy slurm submit {shared.slurm}")


def _local_user() -> str:
    import getpass

    return getpass.getuser()


def submit(folder: DirArg, json_out: JsonOption = False) -> None:
    """Submit every node's script with sbatch: the server first (with --server), each site once the server's
    job has started. Refused (exit 1) while one of them is still queued."""
    from flctl.cloud import slurm_jobs

    jobs = slurm_jobs.submit(slurm_jobs.read_folder(folder))
    _show(jobs, json_out, "submitted")


def status(folder: DirArg, json_out: JsonOption = False) -> None:
    """Each node's job through squeue: id, state, node, time used and left (exit 1 unless all are RUNNING)."""
    from flctl.cloud import slurm_jobs

    jobs = slurm_jobs.status(slurm_jobs.read_folder(folder))
    _show(jobs, json_out, "slurm jobs")
    if not all(job.running for job in jobs):
        raise typer.Exit(exit_codes.FAILED)


def stop(
    folder: DirArg,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the jobs to leave the queue (exit 5 "
                                                "after).")] = 120,
    json_out: JsonOption = False,
) -> None:
    """scancel the sites' jobs, then the server's once they have gone: each node stops cleanly."""
    from flctl.cloud import slurm_jobs

    jobs = slurm_jobs.stop(slurm_jobs.read_folder(folder), timeout)
    _show(jobs, json_out, "stopped")


def _show(jobs: Sequence[NodeJob], json_out: bool, title: str) -> None:
    if json_out:
        terminal.print_json([job.to_json() for job in jobs])
        return
    terminal.table(HEADERS, [[j.participant, j.kind, j.job_id or "-", j.state, j.node, j.elapsed, j.time_left,
                              j.reason] for j in jobs], title=title)
