"""SSH key pairs flctl makes for the machines it creates: ed25519, the private half 0600 and never uploaded."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def ensure_key(path: Path, comment: str) -> str:
    """The OpenSSH public key line of the key at `path`, made first when it does not exist yet."""
    pub = path.with_name(path.name + ".pub")
    if path.is_file() and pub.is_file():
        return pub.read_text().strip()
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {comment}"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    pub.write_text(line + "\n")
    return line
