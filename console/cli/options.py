"""Options shared by several commands, so each is spelled and documented once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes
from flctl.console.cli.terminal import abort

JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout (stable keys).")]
WorkspaceOption = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="Folder that holds <project>/prod_NN kits and <project>/state.",
                 file_okay=False),
]
PassphraseOption = Annotated[
    str | None,
    typer.Option("--passphrase-env", metavar="VAR",
                 help="Encrypt the CA and stored keys at rest with the passphrase held in environment "
                      "variable VAR (and unlock them with it later)."),
]
DEFAULT_WORKSPACE = Path("workspace")


def passphrase_from(var: str | None) -> bytes | None:
    """The passphrase held in environment variable `var`; exit 2 when it is unset or empty."""
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        abort(f"environment variable {var} is not set or empty; export the passphrase in it first",
              exit_codes.BAD_INPUT)
    return value.encode()
