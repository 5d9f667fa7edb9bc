"""`flctl provision renew NAME -p PROJECT.yml`."""

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
from flctl.console.cli.provision.build import as_json, say_encrypted
from flctl.console.cli.provision.delivery import EncryptToOption, ZipPassphraseOption, delivery_from


def command(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Participants to give fresh certificates.")],
    project_file: Annotated[Path, typer.Option("--project", "-p", metavar="PROJECT.yml", help="The project.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    passphrase_env: PassphraseOption = None,
    zip_passphrase_env: ZipPassphraseOption = None,
    encrypt_to: EncryptToOption = None,
    json_out: JsonOption = False,
) -> None:
    """Issue a fresh certificate (and key) for the named participants; every other certificate stays as it is.

    Writes the next prod_NN; send the renewed participants their new kits.
    """
    from flctl.provisioner.build import provision
    from flctl.provisioner.project_loader import load_project

    passphrase = passphrase_from(passphrase_env)
    delivery = delivery_from(zip_passphrase_env, encrypt_to, passphrase)
    loaded = load_project(project_file)
    result = provision(loaded.project, workspace, passphrase, renew=frozenset(names), delivery=delivery)
    if json_out:
        terminal.print_json(as_json(result))
        return
    for kit in result.kits:
        if kit.name in names:
            terminal.success(f"renewed '{kit.name}' until {kit.not_after:%Y-%m-%d}: new kit in {kit.kit_dir}")
    say_encrypted(result)
