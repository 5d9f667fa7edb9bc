"""`flctl provision build PROJECT.yml` (also `flctl provision PROJECT.yml`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import (
    DEFAULT_WORKSPACE,
    JsonOption,
    PassphraseOption,
    WorkspaceOption,
    passphrase_from,
)
from flctl.console.cli.provision.delivery import EncryptToOption, ZipPassphraseOption, delivery_from


def command(
    project_file: Annotated[Path, typer.Argument(metavar="PROJECT.yml",
                                                 help="flctl project (api_version 1) or NVIDIA FLARE's (3).")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    passphrase_env: PassphraseOption = None,
    zip_passphrase_env: ZipPassphraseOption = None,
    encrypt_to: EncryptToOption = None,
    json_out: JsonOption = False,
) -> None:
    """Turn a project.yml into signed startup kits, one folder and one zip per participant.

    Writes WORKSPACE/<project>/prod_NN/ (the next free NN, kits 0700, zips 0600)
    and keeps the CA in WORKSPACE/<project>/state/. Running it again with new
    sites or admins reuses the CA and leaves existing certificates byte-identical.
    With --zip-passphrase-env or --encrypt-to, each kit also gets NAME.zip.enc,
    the one to send by e-mail or on a USB stick.
    """
    from flctl.provisioner.build import provision
    from flctl.provisioner.project_loader import load_project

    passphrase = passphrase_from(passphrase_env)
    delivery = delivery_from(zip_passphrase_env, encrypt_to, passphrase)
    loaded = load_project(project_file)
    for message in loaded.warnings:
        terminal.warning(message)
    total = len(loaded.project.participants())
    if terminal.interactive() and not json_out:
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # Redrawn from the callback, not by rich's refresh thread: with a single thread, big projects are
        # shared among forked processes (flctl.provisioner.fork_pool).
        with Progress(TextColumn("provisioning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), console=terminal.err, transient=True,
                      auto_refresh=False) as bar:
            task = bar.add_task("", total=total)
            drawn = 0.0

            def show(done: int, _total: int, name: str) -> None:
                nonlocal drawn
                bar.update(task, completed=done, description=name)
                if time.monotonic() - drawn > 0.1 or done == _total:
                    bar.refresh()
                    drawn = time.monotonic()

            result = provision(loaded.project, workspace, passphrase, progress=show, delivery=delivery)
    else:
        result = provision(loaded.project, workspace, passphrase, delivery=delivery)
    for message in result.warnings:
        terminal.warning(message)
    if json_out:
        terminal.print_json(as_json(result))
        return
    terminal.table(
        ["participant", "kind", "org", "role", "certificate", "expires"],
        [(k.name, k.kind, k.org, k.role or "", k.status + (f" ({k.reason})" if k.reason else ""),
          f"{k.not_after:%Y-%m-%d}") for k in result.kits],
    )
    made = "created the project CA and " if result.ca_created else ""
    terminal.success(f"{made}wrote {len(result.kits)} kits to {result.prod_dir}")
    say_encrypted(result)


def say_encrypted(result: Any) -> None:
    """Which kits have an encrypted zip to send, and how the receiver opens it."""
    sealed = [k for k in result.kits if k.encrypted_zip is not None]
    if sealed:
        terminal.info(f"encrypted {len(sealed)} kit zips for delivery (NAME.zip.enc in {result.prod_dir}); send "
                      "those, never the plain zips; the receiver runs: flctl kit unpack NAME.zip.enc "
                      "--passphrase-env VAR (or --key KEY.pem) -o DIR")


def as_json(result: Any) -> dict[str, Any]:
    return {
        "project": result.project,
        "prod_dir": str(result.prod_dir),
        "state_dir": str(result.state_dir),
        "ca_created": result.ca_created,
        "warnings": result.warnings,
        "kits": [kit_json(k) for k in result.kits],
    }


def kit_json(k: Any) -> dict[str, Any]:
    return {
        "name": k.name, "kind": k.kind, "org": k.org, "role": k.role, "status": k.status, "reason": k.reason,
        "expires": k.not_after.isoformat(), "kit": str(k.kit_dir), "zip": str(k.zip_path),
        "external_key": k.external_key,
        "encrypted_zip": str(k.encrypted_zip) if k.encrypted_zip is not None else None,
    }
