"""`flctl kit unpack NAME.zip.enc -o DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption, passphrase_from


def command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="NAME.zip.enc (or a plain NAME.zip) from the "
                                                              "provisioner.")],
    passphrase_env: Annotated[str | None, typer.Option(
        "--passphrase-env", metavar="VAR",
        help="The file's passphrase is in environment variable VAR.")] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", metavar="KEY.pem", help="Your private key, whose public key the kit was encrypted to.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False,
                                      help="Folder to unpack into; the kit becomes DIR/NAME.")] = Path("."),
    json_out: JsonOption = False,
) -> None:
    """Decrypt a kit sent by e-mail or USB, check it has not been altered, and unpack it privately.

    The kit folder is made 0700 and its files 0600 (scripts 0700); a wrong
    passphrase or key exits 3, a damaged or altered file exits 2, and in both
    cases nothing is written. The unpacked kit is then verified.
    """
    from flctl.provisioner.kit_unpack import unpack_file
    from flctl.provisioner.signing import verify_kit

    if passphrase_env is not None and key is not None:
        terminal.abort("give --passphrase-env or --key, not both", exit_codes.BAD_INPUT)
    kit = unpack_file(file, out, passphrase_from(passphrase_env), key)
    report = verify_kit(kit)
    if json_out:
        terminal.print_json({"kit": str(kit), "participant": report.participant, "kind": report.kind,
                             "ok": report.ok, "problems": report.problems})
        return
    if report.ok:
        terminal.success(f"unpacked {report.kind} kit '{report.participant}' into {kit}; it is intact and signed "
                         "by its project CA")
        return
    terminal.success(f"unpacked {file} into {kit}")
    for problem in report.problems:
        terminal.warning(problem)
