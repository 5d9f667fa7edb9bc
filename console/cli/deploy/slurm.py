"""`flctl deploy slurm PROJECT_WORKSPACE -o DIR [--time T] [--partition P] [--account A] [--flctl PATH]`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.deploy.k8s import ForceOption, OutOption, WorkspaceArg
from flctl.console.cli.options import JsonOption


def command(
    workspace: WorkspaceArg,
    out: OutOption,
    time: Annotated[str, typer.Option(help="Each site job's time limit (D-HH:MM:SS).")] = "7-00:00:00",
    partition: Annotated[str | None, typer.Option(help="The partition [default: the cluster's].")] = None,
    account: Annotated[str | None, typer.Option(help="The account [default: yours].")] = None,
    flctl: Annotated[str, typer.Option("--flctl", help="The flctl the batch nodes run (e.g. a venv on the "
                                                       "shared file system).")] = "flctl",
    force: ForceOption = False,
    json_out: JsonOption = False,
) -> None:
    """Write one Slurm batch script per site (and submit.sh) that runs it on an HPC cluster.

    Each script asks for what the site's local/resources.yml says (cpus, memory_mb, gpus as
    --gres), starts `flctl node start` from the kit where it lies on the shared file system, and
    takes scancel (or the time limit's warning) as a clean stop; --requeue restarts it after a node
    failure. The server runs elsewhere (its kit's name must be reachable from the batch nodes). Every
    kit is verified first; bad input is refused with exit 2 and nothing is written.
    """
    from flctl.cloud.deploy_output import write_tree
    from flctl.cloud.project_kits import load_project_kits
    from flctl.cloud.slurm_scripts import SlurmOptions, scripts

    kits = load_project_kits(workspace)
    files = scripts(kits, SlurmOptions(time, partition, account, flctl), out.resolve() / "logs")
    write_tree(out, {name: text.encode() for name, text in files.items()}, replace=force)
    if json_out:
        terminal.print_json({"out": str(out), "prod": str(kits.prod), "scripts": sorted(files)})
        return
    if kits.server_host in ("localhost", "127.0.0.1", "::1"):
        terminal.warning(f"the kits name the server {kits.server_host}: a batch node reaches only itself there; "
                         "provision with the server's name as the cluster's nodes reach it")
    terminal.success(f"wrote {len(files) - 1} batch scripts and submit.sh to {out}; submit: bash {out}/submit.sh")
