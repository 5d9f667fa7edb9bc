"""The provisioner's state folder: the project CA and every certificate it issued.

    <workspace>/<project>/state/  ca.crt  ca.key (0600)  issued.json (0600)

The CA key never leaves this folder. `issued.json` keeps each participant's
certificate (and the key the provisioner made for it, unless the participant
keeps its own), so provisioning again reuses them byte for byte. With a
passphrase, every private key in the folder is encrypted at rest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from flctl.provisioner import pki
from flctl.provisioner.errors import PassphraseError, StateError
from flctl.provisioner.project import KeyType

STATE = "state"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
ISSUED = "issued.json"
LOCK = ".lock"
FORMAT_VERSION = 1


@dataclass
class IssuedRecord:
    """One participant's certificate as issued; `key_pem` is None when the participant keeps its own key."""

    name: str
    kind: str
    org: str
    role: str | None
    hosts: list[str]
    cert_pem: str
    key_pem: str | None
    key_source: str  # "provisioner" or "csr"
    issued_at: str

    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem.encode())


@dataclass
class State:
    project: str
    key_type: KeyType
    ca_cert: x509.Certificate
    ca_key: pki.PrivateKey
    issued: dict[str, IssuedRecord] = field(default_factory=dict)
    encrypted: bool = False


def state_dir(project_dir: Path) -> Path:
    return project_dir / STATE


@contextlib.contextmanager
def locked(project_dir: Path) -> Iterator[None]:
    """Hold the project's lock so two provisioners never write one workspace at once."""
    project_dir.mkdir(parents=True, exist_ok=True)
    with open(project_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"another flctl is provisioning {project_dir}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_state(project: str, key_type: KeyType, valid_days: int, now: dt.datetime) -> State:
    key = pki.generate_key(key_type)
    return State(project, key_type, pki.build_ca(project, key, valid_days, now), key)


def load_state(project_dir: Path, passphrase: bytes | None) -> State | None:
    """The saved state, or None when this project was never provisioned here."""
    folder = state_dir(project_dir)
    if not folder.exists():
        return None
    try:
        meta = json.loads((folder / ISSUED).read_text())
        ca_cert = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
        ca_key_pem = (folder / CA_KEY).read_bytes()
    except FileNotFoundError as exc:
        raise StateError(f"{folder} is incomplete ({Path(str(exc.filename)).name} is missing); restore it from "
                         "a backup: without it, existing kits cannot be extended") from None
    except (OSError, ValueError) as exc:
        raise StateError(f"{folder} is damaged ({exc}); restore it from a backup") from None
    if meta.get("version") != FORMAT_VERSION:
        raise StateError(f"{folder / ISSUED} has version {meta.get('version')!r}; this flctl reads {FORMAT_VERSION}")
    encrypted = bool(meta.get("encrypted"))
    ca_key = _load_private(ca_key_pem, passphrase, folder / CA_KEY, encrypted)
    issued = {}
    for name, rec in meta.get("issued", {}).items():
        if rec.get("key_pem") and encrypted:
            assert passphrase is not None
            rec["key_pem"] = pki.key_pem(pki.load_key(rec["key_pem"].encode(), passphrase)).decode()
        issued[name] = IssuedRecord(**rec)
    return State(meta["project"], meta["key_type"], ca_cert, ca_key, issued, encrypted)


def _load_private(data: bytes, passphrase: bytes | None, path: Path, encrypted: bool) -> pki.PrivateKey:
    if encrypted and not passphrase:
        raise PassphraseError(f"the CA key in {path.parent} is encrypted; give its passphrase with "
                              "--passphrase-env VAR")
    try:
        return pki.load_key(data, passphrase if encrypted else None)
    except (TypeError, ValueError):
        if encrypted:
            raise PassphraseError(f"the passphrase does not unlock the CA key in {path.parent}") from None
        raise StateError(f"{path} is not a readable private key; restore it from a backup") from None


def save_state(project_dir: Path, state: State, passphrase: bytes | None) -> None:
    """Write the state atomically: each file is replaced whole, keys with mode 0600."""
    folder = state_dir(project_dir)
    folder.mkdir(mode=0o700, exist_ok=True)
    state.encrypted = bool(passphrase)
    issued: dict[str, Any] = {}
    for name, rec in state.issued.items():
        data = dict(vars(rec))
        if rec.key_pem and passphrase:
            data["key_pem"] = pki.key_pem(pki.load_key(rec.key_pem.encode()), passphrase).decode()
        issued[name] = data
    meta = {"version": FORMAT_VERSION, "project": state.project, "key_type": state.key_type,
            "encrypted": state.encrypted}
    write_atomic(folder / CA_CERT, pki.cert_pem(state.ca_cert), 0o644)
    write_atomic(folder / CA_KEY, pki.key_pem(state.ca_key, passphrase), 0o600)
    write_atomic(folder / ISSUED, _issued_json(meta, issued).encode(), 0o600)


def _issued_json(meta: dict[str, Any], issued: dict[str, Any]) -> str:
    """`issued.json`: the metadata one key a line, then one line per participant (quick to write for
    thousands of participants, and a re-run's diff shows who changed)."""
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in sorted(meta.items())]
    records = [f"  {json.dumps(name)}: {json.dumps(rec, sort_keys=True)}" for name, rec in sorted(issued.items())]
    body = ("{\n" + ",\n".join(records) + "\n }") if records else "{}"
    return "{\n" + "\n".join(lines) + f'\n "issued": {body}\n}}\n'


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` so a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
