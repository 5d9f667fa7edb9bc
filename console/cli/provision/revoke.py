"""`flctl provision revoke NAME -p PROJECT.yml` and `flctl provision crl -p PROJECT.yml`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import (
    DEFAULT_WORKSPACE,
    JsonOption,
    PassphraseOption,
    WorkspaceOption,
    passphrase_from,
)


def command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The participant whose certificate is revoked.")],
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
    crl.pem to the server kit's local/crl.pem: a running server reads it when it changes.
    """
    from flctl.provisioner.project_loader import load_project
    from flctl.provisioner.revocation import revoke

    loaded = load_project(project_file)
    result = revoke(workspace / loaded.project.name, name, passphrase_from(passphrase_env))
    published = _publish(result.crl_path, kit)
    if json_out:
        terminal.print_json({"name": name, "serial": f"{result.serial:x}", "crl": str(result.crl_path),
                             "crl_number": result.crl_number, "published": bool(published)})
        return
    terminal.success(f"revoked '{name}' (serial {result.serial:x}); CRL {result.crl_number} is {result.crl_path}")
    _tell(published)


def crl_command(
    project_file: Annotated[Path, typer.Option("--project", "-p", metavar="PROJECT.yml", help="The project.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    kit: Annotated[Path | None, typer.Option("--kit", metavar="DIR", file_okay=False,
                                             help="A project_admin's kit: also install the new CRL on the running "
                                                  "server.")] = None,
    passphrase_env: PassphraseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Issue the project's CRL again with a fresh next update (the same revoked certificates, number + 1).

    Nodes refuse a CRL past its next update (a year after it was issued), so
    renew it before then; --kit publishes it to the running server at once.
    """
    from flctl.provisioner.project_loader import load_project
    from flctl.provisioner.revocation import refresh_crl

    loaded = load_project(project_file)
    result = refresh_crl(workspace / loaded.project.name, passphrase_from(passphrase_env))
    published = _publish(result.crl_path, kit)
    if json_out:
        terminal.print_json({"crl": str(result.crl_path), "crl_number": result.crl_number, "revoked": result.revoked,
                             "next_update": result.next_update.isoformat(), "published": bool(published)})
        return
    terminal.success(f"CRL {result.crl_number} ({result.revoked} revoked) is {result.crl_path}; next update "
                     f"{result.next_update:%Y-%m-%d}")
    _tell(published)


def _publish(crl_path: Path, kit: Path | None) -> str:
    """Check the CRL against the project's CA, then (with `kit`) send it to the server; the server's answer."""
    from flctl.node.security.revocation import CrlRefused, check_crl
    from flctl.provisioner.errors import StateError

    ca = crl_path.parent / "ca.crt"
    try:
        check_crl(crl_path.read_bytes(), ca.read_bytes())
    except CrlRefused as exc:
        raise StateError(f"{crl_path}: {exc}; not published") from None
    except FileNotFoundError as exc:
        raise StateError(f"cannot check {crl_path}: {exc.filename} is missing") from None
    if kit is None:
        return ""
    from flctl.node.admin.admin_client import AdminClient

    with AdminClient.from_kit(kit) as admin:
        return admin.publish_crl(crl_path.read_bytes())


def _tell(published: str) -> None:
    if published:
        terminal.info(f"the server says: {published}")
    else:
        terminal.info("install it: --kit ADMIN_KIT publishes it to the running server, or copy it to the server "
                      "kit's local/crl.pem (read again within a call of the running server)")
