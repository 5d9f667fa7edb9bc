"""`flctl provision revoke NAME -p PROJECT.yml`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.cli import terminal
from console.cli.options import (
    DEFAULT_WORKSPACE,
    JsonOption,
    PassphraseOption,
    WorkspaceOption,
    passphrase_from,
)


def command(
    name: Annotated[str, typer.Argument(help="The participant whose certificate is revoked.")],
    project_file: Annotated[Path, typer.Option("--project", "-p", metavar="PROJECT.yml", help="The project.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    kit: Annotated[Path | None, typer.Option("--kit", metavar="DIR", file_okay=False,
                                             help="A project_admin's kit: also install the new CRL on the running "
                                                  "server, effective at once.")] = None,
    passphrase_env: PassphraseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Put a participant's certificate on the project's CRL (WORKSPACE/<project>/state/crl.pem).

    With --kit the CRL goes straight to the server, which refuses the certificate
    from then on (sites learn it with their next heartbeat); without it, copy
    crl.pem to the server kit's local/crl.pem and restart the server.
    """
    from provisioner.project_loader import load_project
    from provisioner.revocation import revoke

    loaded = load_project(project_file)
    result = revoke(workspace / loaded.project.name, name, passphrase_from(passphrase_env))
    published = ""
    if kit is not None:
        from node.admin_client import AdminClient

        with AdminClient.from_kit(kit) as admin:
            published = admin.publish_crl(result.crl_path.read_bytes())
    if json_out:
        terminal.print_json({"name": name, "serial": f"{result.serial:x}", "crl": str(result.crl_path),
                             "crl_number": result.crl_number, "published": bool(published)})
        return
    terminal.success(f"revoked '{name}' (serial {result.serial:x}); CRL {result.crl_number} is {result.crl_path}")
    if published:
        terminal.info(f"the server says: {published}")
    else:
        terminal.info("install it: --kit ADMIN_KIT publishes it to the running server, or copy it to the server "
                      "kit's local/crl.pem")
