"""`flctl kit verify KIT`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption


def command(
    kit: Annotated[Path, typer.Argument(metavar="KIT", help="Kit folder (or its startup/ folder).")],
    ca: Annotated[Path | None, typer.Option("--ca", metavar="CA.crt",
                                            help="Also require the kit to be signed by this project CA.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Check a kit's signature, every file in startup/, its certificates and its key.

    Exits 0 when the kit is intact, 1 naming each changed, missing or extra file,
    an expired certificate or a broken chain.
    """
    from cryptography import x509

    from flctl.provisioner.signing import verify_kit

    trusted = None
    if ca is not None:
        try:
            trusted = x509.load_pem_x509_certificate(ca.read_bytes())
        except (OSError, ValueError):
            terminal.abort(f"{ca} is not a readable PEM certificate; pass the project's ca.crt to --ca",
                           exit_codes.BAD_INPUT)
    report = verify_kit(kit, trusted)
    if json_out:
        terminal.print_json({"kit": str(report.kit), "participant": report.participant, "kind": report.kind,
                             "ok": report.ok, "problems": report.problems})
    elif report.ok:
        terminal.success(f"{report.kind} kit '{report.participant}' is intact and signed by its project CA")
    else:
        for problem in report.problems:
            terminal.error(problem)
    if not report.ok:
        raise typer.Exit(exit_codes.FAILED)
