"""`flctl provision sign REQUEST.csr -p PROJECT.yml`."""

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
from flctl.console.cli.provision.build import kit_json


def command(
    request: Annotated[Path, typer.Argument(metavar="REQUEST.csr", help="Made by `flctl kit request`.")],
    project_file: Annotated[Path, typer.Option("--project", "-p", metavar="PROJECT.yml",
                                               help="The project the participant belongs to.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    out: Annotated[Path | None, typer.Option("--out", "-o", file_okay=False,
                                             help="Kit folder to write [default: WORKSPACE/<project>/signed/<name>]")
                   ] = None,
    passphrase_env: PassphraseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Certify a participant's own key from its request and write its kit, which holds no private key.

    The request must name a participant of PROJECT.yml with the same kind, org and
    role. Later `flctl provision` runs keep this certificate. The participant adds
    its key with `flctl kit complete`.
    """
    from flctl.provisioner.csr import sign_request
    from flctl.provisioner.project_loader import load_project

    passphrase = passphrase_from(passphrase_env)
    loaded = load_project(project_file)
    for message in loaded.warnings:
        terminal.warning(message)
    kit = sign_request(loaded.project, workspace, request, out, passphrase)
    if json_out:
        terminal.print_json(kit_json(kit))
        return
    terminal.success(f"signed {kit.kind} '{kit.name}' until {kit.not_after:%Y-%m-%d}: kit in {kit.kit_dir}, "
                     f"archive {kit.zip_path}")
    terminal.info(f"send it to the participant, who runs: {complete_command(kit.kit_dir, kit.name)}")


def complete_command(kit_dir: Path, name: str) -> str:
    """The exact `flctl kit complete` line for the kit written to `kit_dir` (quoted for a POSIX shell)."""
    import shlex

    return f"flctl kit complete {shlex.quote(str(kit_dir))} --key {shlex.quote(name + '.key')}"
