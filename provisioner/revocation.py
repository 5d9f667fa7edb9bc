"""Revoke a participant: its certificate goes on the project's CRL, signed by the CA.

    <workspace>/<project>/state/revoked.json   what was revoked, when and why
    <workspace>/<project>/state/crl.pem        the CRL to install on the server (`flctl provision revoke`)

Each CRL is valid for CRL_VALID_DAYS from when it is issued (its next update); nodes refuse a CRL past its next
update, so a project with revocations issues a fresh one before then (`flctl provision crl`, or any new revocation).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from flctl.provisioner.errors import StateError
from flctl.provisioner.pki import PrivateKey
from flctl.provisioner.state import load_state, locked, state_dir, write_atomic

CRL_FILE = "crl.pem"
REVOKED_FILE = "revoked.json"
CRL_VALID_DAYS = 365


@dataclass(frozen=True)
class Revocation:
    name: str
    serial: int
    crl_path: Path
    crl_number: int


def revoke(project_dir: Path, name: str, passphrase: bytes | None = None, now: dt.datetime | None = None
           ) -> Revocation:
    """Add `name`'s current certificate to the CRL and write the new CRL (number + 1)."""
    now = now or dt.datetime.now(dt.UTC)
    with locked(project_dir):
        state = load_state(project_dir, passphrase)
        if state is None:
            raise StateError(f"{project_dir} was never provisioned; nothing to revoke")
        record = state.issued.get(name)
        if record is None:
            known = ", ".join(sorted(state.issued)) or "none"
            raise StateError(f"'{name}' was never issued a certificate here (issued: {known})")
        folder = state_dir(project_dir)
        revoked = _read(folder)
        serial = record.cert().serial_number
        if not any(r["serial"] == serial for r in revoked["certificates"]):
            revoked["certificates"].append({"name": name, "serial": serial, "revoked_at": now.isoformat()})
        number = _issue(folder, revoked, state.ca_cert, state.ca_key, now)
    return Revocation(name, serial, folder / CRL_FILE, number)


@dataclass(frozen=True)
class CrlIssued:
    crl_path: Path
    crl_number: int
    revoked: int
    next_update: dt.datetime


def refresh_crl(project_dir: Path, passphrase: bytes | None = None, now: dt.datetime | None = None) -> CrlIssued:
    """Issue the CRL again (number + 1, the same revoked certificates) with a fresh next update."""
    now = now or dt.datetime.now(dt.UTC)
    with locked(project_dir):
        state = load_state(project_dir, passphrase)
        if state is None:
            raise StateError(f"{project_dir} was never provisioned; there is no CRL to issue")
        folder = state_dir(project_dir)
        revoked = _read(folder)
        number = _issue(folder, revoked, state.ca_cert, state.ca_key, now)
    return CrlIssued(folder / CRL_FILE, number, len(revoked["certificates"]), now + dt.timedelta(days=CRL_VALID_DAYS))


def _issue(folder: Path, revoked: dict[str, Any], ca_cert: x509.Certificate, ca_key: PrivateKey,
           now: dt.datetime) -> int:
    """Sign and write the CRL of `revoked` (its number + 1) and the updated record; the new number."""
    revoked["crl_number"] = int(revoked["crl_number"]) + 1
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now)
               .next_update(now + dt.timedelta(days=CRL_VALID_DAYS))
               .add_extension(x509.CRLNumber(revoked["crl_number"]), critical=False))
    for entry in revoked["certificates"]:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(entry["serial"])
            .revocation_date(dt.datetime.fromisoformat(entry["revoked_at"])).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    write_atomic(folder / CRL_FILE, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    write_atomic(folder / REVOKED_FILE, (json.dumps(revoked, indent=1) + "\n").encode(), 0o644)
    return int(revoked["crl_number"])


def _read(folder: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((folder / REVOKED_FILE).read_text())
    except FileNotFoundError:
        return {"crl_number": 0, "certificates": []}
    return data
