"""Options of `flctl provision` and `provision renew` that encrypt each kit's zip for delivery."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import exit_codes
from flctl.console.cli.terminal import abort

if TYPE_CHECKING:
    from flctl.provisioner.kit_encryption import Delivery

MIN_PASSPHRASE = 12  # the file may be copied by anyone on its way: it must withstand an offline guessing attack

ZipPassphraseOption = Annotated[
    str | None,
    typer.Option("--zip-passphrase-env", metavar="VAR",
                 help="Also write NAME.zip.enc for each kit: its zip encrypted (scrypt, AES-256-GCM) with the "
                      f"passphrase (at least {MIN_PASSPHRASE} characters) held in environment variable VAR. "
                      "The receiver runs `flctl kit unpack NAME.zip.enc --passphrase-env VAR`."),
]
EncryptToOption = Annotated[
    list[str] | None,
    typer.Option("--encrypt-to", metavar="NAME=KEY.pem",
                 help="Write NAME.zip.enc encrypted to the participant's own X25519 or EC P-256 public key "
                      "(a public key, certificate request or certificate PEM); repeat for more participants. "
                      "The receiver runs `flctl kit unpack NAME.zip.enc --key THEIR_PRIVATE_KEY.pem`."),
]


def delivery_from(passphrase_var: str | None, encrypt_to: list[str] | None,
                  state_passphrase: bytes | None) -> Delivery | None:
    """The run's Delivery from the options, or None; exit 2 for a missing, short or reused passphrase."""
    if passphrase_var is None and not encrypt_to:
        return None
    from flctl.provisioner.kit_encryption import Delivery, Passphrase, RecipientKey, load_recipient

    recipients: dict[str, RecipientKey] = {}
    for item in encrypt_to or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            abort(f"--encrypt-to {item!r}: write it as NAME=KEY.pem (a participant and its public key file)",
                  exit_codes.BAD_INPUT)
        if name in recipients:
            abort(f"--encrypt-to names '{name}' twice; give one key per participant", exit_codes.BAD_INPUT)
        recipients[name] = load_recipient(Path(path))
    passphrase = None
    if passphrase_var is not None:
        value = os.environ.get(passphrase_var, "")
        if not value:
            abort(f"environment variable {passphrase_var} is not set or empty; export the zip passphrase in it "
                  "first", exit_codes.BAD_INPUT)
        if len(value) < MIN_PASSPHRASE:
            abort(f"the zip passphrase in {passphrase_var} has {len(value)} characters; use at least "
                  f"{MIN_PASSPHRASE} (it guards a private key wherever the file is copied)", exit_codes.BAD_INPUT)
        if state_passphrase is not None and value.encode() == state_passphrase:
            abort("the zip passphrase is the CA's passphrase (--passphrase-env); use another, since every "
                  "receiver learns it", exit_codes.BAD_INPUT)
        passphrase = Passphrase.derive(value.encode())
    return Delivery(passphrase, recipients)
