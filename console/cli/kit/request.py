"""`flctl kit request NAME --org ORG`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption


def command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Participant name, as in project.yml.")],
    org: Annotated[str, typer.Option("--org", help="Organisation, as in project.yml.")],
    kind: Annotated[str, typer.Option("--kind", help="server, site or admin.")] = "site",
    role: Annotated[str | None, typer.Option("--role", help="Admins only: project_admin, org_admin, lead or "
                                                            "member.")] = None,
    key_type: Annotated[str, typer.Option("--key-type", help="ec-p256, rsa-2048 or rsa-3072.")] = "ec-p256",
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, help="Where to write NAME.key and "
                                                                           "NAME.csr.")] = Path("."),
    json_out: JsonOption = False,
) -> None:
    """Make a private key and a certificate request, so the key never leaves this machine.

    Send NAME.csr to the provisioner (`flctl provision sign`); keep NAME.key here.
    """
    from flctl.provisioner.csr import make_request
    from flctl.provisioner.errors import InputError, Problem
    from flctl.provisioner.project import KEY_TYPES, KINDS, ROLES

    problems = []
    if kind not in KINDS:
        problems.append(Problem("command line", None, "--kind", f"'{kind}' is not allowed; use {', '.join(KINDS)}"))
    if role is not None and role not in ROLES:
        problems.append(Problem("command line", None, "--role", f"'{role}' is not allowed; use {', '.join(ROLES)}"))
    if key_type not in KEY_TYPES:
        problems.append(Problem("command line", None, "--key-type",
                                f"'{key_type}' is not allowed; use {', '.join(KEY_TYPES)}"))
    if problems:
        raise InputError(problems)
    req = make_request(name, org, kind, role, out, key_type)  # type: ignore[arg-type]
    if json_out:
        terminal.print_json({"name": name, "key": str(req.key_path), "csr": str(req.csr_path)})
        return
    terminal.success(f"wrote {req.key_path} (keep it here, mode 0600) and {req.csr_path}")
    terminal.info(f"send {req.csr_path.name} to your provisioner, who runs: flctl provision sign "
                  f"{req.csr_path.name} -p project.yml")
