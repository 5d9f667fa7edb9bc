"""`flctl kit show KIT`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption


def command(
    kit: Annotated[Path, typer.Argument(metavar="KIT", help="Kit folder (or its startup/ folder).")],
    json_out: JsonOption = False,
) -> None:
    """Show who a kit belongs to: identity, org, role, certificate expiry and server address."""
    from flctl.provisioner.kit_info import EXPIRY_WARNING_DAYS, read_kit

    info = read_kit(kit)
    days = info.days_left()
    if json_out:
        terminal.print_json({
            "name": info.name, "kind": info.kind, "org": info.org, "role": info.role, "project": info.project,
            "server": f"{info.server_host}:{info.server_port}", "expires": info.not_after.isoformat(),
            "days_left": days, "ca_expires": info.ca_not_after.isoformat(), "fingerprint": info.fingerprint,
            "kit": str(info.path),
        })
    else:
        terminal.fields([
            ("name", info.name), ("kind", info.kind), ("org", info.org), ("role", info.role or "-"),
            ("project", info.project), ("server", f"{info.server_host}:{info.server_port}"),
            ("expires", f"{info.not_after:%Y-%m-%d %H:%M} UTC ({days} days left)"),
            ("ca expires", f"{info.ca_not_after:%Y-%m-%d}"), ("sha256", info.fingerprint), ("kit", info.path),
        ])
    if info.expiring():
        terminal.warning(f"the certificate of '{info.name}' expires within {EXPIRY_WARNING_DAYS} days "
                         f"({days} left); ask the provisioner for a new kit")
