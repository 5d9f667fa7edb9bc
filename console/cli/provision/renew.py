"""`flctl provision renew NAME -p PROJECT.yml`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from flctl.provisioner.build import ProvisionResult
    from flctl.provisioner.project import Project


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
    from flctl.provisioner.project_loader import load_project

    result = renew(names, load_project(project_file).project, workspace, passphrase_env, zip_passphrase_env,
                   encrypt_to)
    report(result, names, json_out)


def renew(names: list[str], project: Project, workspace: Path, passphrase_env: str | None,
          zip_passphrase_env: str | None, encrypt_to: list[str] | None) -> ProvisionResult:
    """Re-issue the named participants' certificates (the next prod_NN); shared with `flctl certs renew`."""
    from flctl.provisioner.build import provision

    passphrase = passphrase_from(passphrase_env)
    delivery = delivery_from(zip_passphrase_env, encrypt_to, passphrase)
    return provision(project, workspace, passphrase, renew=frozenset(names), delivery=delivery)


def report(result: ProvisionResult, names: list[str], json_out: bool, extra: dict[str, Any] | None = None) -> None:
    """Where the renewed participants' new kits are (`extra`: more keys for --json)."""
    if json_out:
        terminal.print_json({**as_json(result), **(extra or {})})
        return
    for kit in result.kits:
        if kit.name in names:
            terminal.success(f"renewed '{kit.name}' until {kit.not_after:%Y-%m-%d}: new kit in {kit.kit_dir}")
    say_encrypted(result)
