"""`flctl deploy docker PROJECT_WORKSPACE -o DIR [--image TAG] [--bind ADDRESS]`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.deploy.k8s import ForceOption, OutOption, WorkspaceArg
from flctl.console.cli.options import JsonOption


def command(
    workspace: WorkspaceArg,
    out: OutOption,
    image: Annotated[str, typer.Option(help="The image (`flctl deploy image build -t TAG`).")] = "flctl:latest",
    bind: Annotated[str, typer.Option(help="The address the server's port is published on (127.0.0.1: this "
                                           "machine only).")] = "0.0.0.0",
    force: ForceOption = False,
    json_out: JsonOption = False,
) -> None:
    """Write a compose file (and its .env) that runs the server and every site in containers.

    One service per participant: its kit mounted read-only from the prod folder (never in the
    image), its workspace a named volume, the federation port published on the server only,
    restart unless-stopped, a read-only root filesystem, no capabilities, a health check, and the
    limits of the kit's local/resources.yml (cpus, memory_mb, gpus). Every kit is verified first;
    bad input is refused with exit 2 and nothing is written. Then, in DIR: `docker compose up -d`
    (or `podman compose up -d`).
    """
    import yaml

    from flctl.cloud.compose_file import compose, env_file
    from flctl.cloud.deploy_output import write_tree
    from flctl.cloud.project_kits import load_project_kits

    kits = load_project_kits(workspace)
    document = compose(kits)
    env = env_file(kits, image, bind)
    write_tree(out, {"compose.yaml": yaml.safe_dump(document, sort_keys=False).encode(), ".env": env.encode()},
               replace=force)
    if json_out:
        terminal.print_json({"out": str(out), "prod": str(kits.prod), "services": list(document["services"]),
                             "names": {kit.participant: kit.name for kit in kits.nodes}})
        return
    if kits.prod.stat().st_uid == 0:
        terminal.warning(f"the kits in {kits.prod} belong to root; the containers run as uid 10001, which must "
                         "read them: provision as another user, or set FLCTL_UID in .env")
    terminal.success(f"wrote {out}/compose.yaml ({len(document['services'])} services) and {out}/.env; "
                     f"start: cd {out} && docker compose up -d")
