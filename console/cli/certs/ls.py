"""`flctl certs [--json]`: through the server, or `flctl certs -p PROJECT.yml` offline from the provisioning state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.certs.listing import CertRow, row_cells, row_json, sort_rows
from flctl.console.cli.options import DEFAULT_WORKSPACE, JsonOption, WorkspaceOption
from flctl.provisioner.kit_info import EXPIRY_WARNING_DAYS

ProjectOption = Annotated[
    Path | None,
    typer.Option("--project", "-p", metavar="PROJECT.yml",
                 help="Read the certificates offline from this project's provisioning state (under --workspace) "
                      "instead of asking the server.", show_default=False),
]
WithinOption = Annotated[float, typer.Option("--within", metavar="DAYS", min=0,
                                             help="Mark certificates with fewer days left than this.")]


def command(project_file: ProjectOption = None, workspace: WorkspaceOption = DEFAULT_WORKSPACE,
            kit: KitOption = None, _context: ContextOption = None, within: WithinOption = EXPIRY_WARNING_DAYS,
            json_out: JsonOption = False) -> None:
    """List every participant's certificate with its days to expiry, soonest first; marks those under 30 days.

    Through the server (the admin kit of --kit or the current context): the server's, every registered site's and
    every admin's that has called it. With -p PROJECT.yml: every certificate the project's CA issued, read from the
    state folder under --workspace (no passphrase needed).
    """
    rows = sort_rows(_offline(project_file, workspace) if project_file else _online(kit))
    now = time.time()
    if json_out:
        terminal.print_json([row_json(r, now, within) for r in rows])
        return
    terminal.table(["name", "kind", "org", "role", "expires", "days left", "mark"],
                   [row_cells(r, now, within) for r in rows])
    soon = [r for r in rows if r.days_left(now) < within]
    if soon:
        where = f"-p {project_file} -w {workspace}" if project_file else "-p PROJECT.yml -w WORKSPACE"
        terminal.warning(f"{len(soon)} certificate(s) expire within {within:g} days: {', '.join(r.name for r in soon)}"
                         f"; renew them where the project is provisioned: `flctl certs renew --expiring {within:g} "
                         f"{where}`")


def _online(kit: Path | None) -> list[CertRow]:
    with connect(kit) as admin:
        certs = admin.list_certificates()
    return [CertRow(c.name, c.kind, c.org, c.role, c.not_after) for c in certs]


def _offline(project_file: Path, workspace: Path) -> list[CertRow]:
    from flctl.provisioner.cert_expiry import issued_certificates
    from flctl.provisioner.project_loader import load_project

    name = load_project(project_file).project.name
    if not (workspace / name / "state").is_dir():
        terminal.abort(f"project '{name}' was never provisioned under {workspace} (no {workspace / name / 'state'}); "
                       "give the workspace that holds its state folder with -w DIR", exit_codes.BAD_INPUT)
    return [CertRow(c.name, c.kind, c.org, c.role, c.not_after) for c in issued_certificates(workspace / name)]
