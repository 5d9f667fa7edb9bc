"""`flctl certs renew --expiring DAYS -p PROJECT.yml`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import DEFAULT_WORKSPACE, JsonOption, PassphraseOption, WorkspaceOption
from flctl.console.cli.provision import renew as provision_renew
from flctl.console.cli.provision.delivery import EncryptToOption, ZipPassphraseOption


def command(
    expiring_days: Annotated[float, typer.Option("--expiring", metavar="DAYS", min=0,
                                                 help="Renew every certificate with fewer days left than this "
                                                      "(expired ones too).")],
    project_file: Annotated[Path, typer.Option("--project", "-p", metavar="PROJECT.yml", help="The project.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    passphrase_env: PassphraseOption = None,
    zip_passphrase_env: ZipPassphraseOption = None,
    encrypt_to: EncryptToOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say which would be renewed; write nothing.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Re-issue exactly the certificates that expire within DAYS (as `flctl provision renew NAME...` does) and say
    which kits must be delivered again; every other certificate stays as it is."""
    from flctl.provisioner.cert_expiry import expiring, issued_certificates
    from flctl.provisioner.project_loader import load_project

    project = load_project(project_file).project
    project_dir = workspace / project.name
    if not (project_dir / "state").is_dir():
        terminal.abort(f"project '{project.name}' was never provisioned under {workspace} (no {project_dir / 'state'})"
                       "; give the workspace that holds its state folder with -w DIR", exit_codes.BAD_INPUT)
    now = time.time()
    members = {p.name for p in project.participants()}
    soon = expiring(issued_certificates(project_dir), expiring_days, now)
    due = [c for c in soon if c.name in members]
    gone = [c.name for c in soon if c.name not in members]  # left the project: provision would refuse them
    names = [c.name for c in due]
    if not names or dry_run:
        if json_out:
            terminal.print_json({"renewed": [] if not dry_run else names, "would_renew": names if dry_run else [],
                                 "redeliver": [], "not_in_project": gone})
            return
        if not names:
            terminal.success(f"no certificate of project '{project.name}' expires within {expiring_days:g} days")
        for cert in due:
            terminal.info(f"would renew '{cert.name}' ({cert.kind}, {cert.days_left(now):.0f} days left)")
        for name in gone:
            terminal.warning(f"'{name}' expires soon but is no longer in {project_file}: left as it is")
        return
    result = provision_renew.renew(names, project, workspace, passphrase_env, zip_passphrase_env, encrypt_to)
    kits = [k for k in result.kits if k.name in names or k.status != "kept"]
    redeliver = [{"name": k.name, "kind": k.kind, "kit": str(k.kit_dir), "zip": str(k.zip_path),
                  "reason": k.reason} for k in kits]
    provision_renew.report(result, names, json_out, {"renewed": names, "would_renew": [], "redeliver": redeliver,
                                                     "not_in_project": gone})
    if json_out:
        return
    for name in gone:
        terminal.warning(f"'{name}' expires soon but is no longer in {project_file}: left as it is")
    others = [k for k in kits if k.name not in names]
    for kit in others:
        terminal.warning(f"'{kit.name}' was also {kit.status} ({kit.reason or 'new in project.yml'})")
    terminal.info(f"deliver these kits again, each to its participant: "
                  f"{', '.join(str(k.zip_path) for k in kits)}")
