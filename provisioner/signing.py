"""Sign a kit's `startup/` folder with the project CA, and verify a kit on disk.

`signature.json` lists the SHA-256 of every file in `startup/` and a signature by
the CA key over that list (canonical JSON). Verification names each changed,
missing or extra file, an expired certificate, a broken chain or a key that does
not match its certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from flctl.provisioner import kit_layout as layout
from flctl.provisioner import pki

if TYPE_CHECKING:  # project.yml's schema is heavy: a command that only verifies a kit does not build it
    from flctl.provisioner.project import Participant

FORMAT_VERSION = 1


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign_startup(startup_files: Mapping[str, bytes], who: Participant, project: str, ca_key: pki.PrivateKey,
                 ca_cert: x509.Certificate, external_key: bool, now: dt.datetime,
                 ca_sha256: str | None = None) -> bytes:
    """The bytes of `signature.json` for `startup_files` (names relative to `startup/`).

    `ca_sha256`, the CA's fingerprint, saves working it out again for every kit of a run.
    """
    payload: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "project": project,
        "participant": who.name,
        "kind": who.kind,
        "signed_at": now.isoformat(timespec="seconds"),
        "ca_sha256": ca_sha256 or pki.fingerprint(ca_cert),
        "external_key": layout.key_name(who.kind) if external_key else None,
        "files": {name: _digest(data) for name, data in sorted(startup_files.items())},
    }
    payload["signature"] = base64.b64encode(pki.sign_bytes(ca_key, _canonical(payload))).decode()
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


@dataclass
class Verification:
    """What `verify_kit` found: no problems means the kit is intact and usable."""

    kit: Path
    participant: str | None = None
    kind: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_kit(path: Path, trusted_ca: x509.Certificate | None = None,
               now: dt.datetime | None = None) -> Verification:
    """Check a kit folder against its signature and its certificates."""
    now = now or dt.datetime.now(dt.UTC)
    paths = layout.KitPaths.find(path)
    report = Verification(paths.root)
    if not paths.startup.is_dir():
        report.problems.append(f"{paths.root} is not a startup kit (no {layout.STARTUP}/ folder)")
        return report
    sig = _read_signature(paths, report)
    ca = _read_cert(paths.ca_cert, f"{layout.STARTUP}/{layout.CA_CERT}", report)
    if sig is None or ca is None:
        return report
    report.participant, report.kind = sig.get("participant"), sig.get("kind")
    if trusted_ca is not None and pki.fingerprint(trusted_ca) != pki.fingerprint(ca):
        report.problems.append(f"{layout.STARTUP}/{layout.CA_CERT} is not the trusted project CA")
    signature = sig.pop("signature", "")
    try:
        valid = pki.verify_bytes(ca.public_key(), base64.b64decode(signature, validate=True), _canonical(sig))
    except ValueError:
        valid = False
    if not valid:
        report.problems.append(f"{layout.STARTUP}/{layout.SIGNATURE} does not verify against the project CA "
                               "(it was edited, or signed by another CA)")
        return report
    _check_files(paths, sig, report)
    _check_certs(paths, sig, ca, now, report)
    return report


def _read_signature(paths: layout.KitPaths, report: Verification) -> dict[str, Any] | None:
    shown = f"{layout.STARTUP}/{layout.SIGNATURE}"
    try:
        sig = json.loads(paths.signature.read_bytes())
    except FileNotFoundError:
        report.problems.append(f"{shown} is missing: the kit is not signed")
        return None
    except (OSError, ValueError):
        report.problems.append(f"{shown} is not valid JSON")
        return None
    if not isinstance(sig, dict) or sig.get("version") != FORMAT_VERSION or not isinstance(sig.get("files"), dict):
        report.problems.append(f"{shown} is not an flctl kit signature (version {FORMAT_VERSION})")
        return None
    return sig


def _read_cert(path: Path, shown: str, report: Verification) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        report.problems.append(f"{shown} is missing")
    except (OSError, ValueError):
        report.problems.append(f"{shown} is not a PEM certificate")
    return None


def _check_files(paths: layout.KitPaths, sig: dict[str, Any], report: Verification) -> None:
    signed: dict[str, str] = sig["files"]
    external = sig.get("external_key")
    present = {
        p.relative_to(paths.startup).as_posix()
        for p in paths.startup.rglob("*")
        if p.is_file() or p.is_symlink()
    }
    for name, digest in sorted(signed.items()):
        if name not in present:
            report.problems.append(f"{layout.STARTUP}/{name} is missing")
        elif (paths.startup / name).is_symlink():
            report.problems.append(f"{layout.STARTUP}/{name} was replaced by a symbolic link")
        elif _digest((paths.startup / name).read_bytes()) != digest:
            report.problems.append(f"{layout.STARTUP}/{name} was changed")
    for name in sorted(present - set(signed) - {layout.SIGNATURE, external}):
        report.problems.append(f"{layout.STARTUP}/{name} is not part of the signed kit")
    if external and external not in present:
        report.problems.append(f"{layout.STARTUP}/{external} is missing: this kit was made from a certificate "
                               "request; add your key with `flctl kit complete`")


def _check_certs(paths: layout.KitPaths, sig: dict[str, Any], ca: x509.Certificate, now: dt.datetime,
                 report: Verification) -> None:
    kind = sig.get("kind")
    if kind not in ("server", "site", "admin", "relay"):
        report.problems.append(f"{layout.STARTUP}/{layout.SIGNATURE} names an unknown kind {kind!r}")
        return
    if ca.not_valid_after_utc < now:
        report.problems.append(f"the project CA expired on {ca.not_valid_after_utc:%Y-%m-%d}")
    cert_shown = f"{layout.STARTUP}/{layout.cert_name(kind)}"
    cert = _read_cert(paths.cert(kind), cert_shown, report)
    if cert is None:
        return
    if not pki.issued_by(cert, ca):
        report.problems.append(f"{cert_shown} was not issued by the kit's CA (broken chain)")
    if cert.not_valid_after_utc < now:
        report.problems.append(f"{cert_shown} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                               "renew it with the provisioner")
    elif cert.not_valid_before_utc > now:
        report.problems.append(f"{cert_shown} is not yet valid: valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                               f"UTC, and this machine's clock says {now:%Y-%m-%d %H:%M} UTC; check the clocks of "
                               "this machine and of the provisioner")
    try:
        who = pki.identity_of(cert)
        if who.name != sig.get("participant") or who.kind != kind:
            report.problems.append(f"{cert_shown} belongs to {who.kind} '{who.name}', not to this kit")
    except ValueError as exc:
        report.problems.append(f"{cert_shown}: {exc}")
    key_path = paths.key(kind)
    if key_path.is_file():
        try:
            key = pki.load_key(key_path.read_bytes())
        except (TypeError, ValueError):
            report.problems.append(f"{layout.STARTUP}/{layout.key_name(kind)} is not an unencrypted PEM key")
            return
        if not pki.key_matches(key, cert):
            report.problems.append(f"{layout.STARTUP}/{layout.key_name(kind)} does not match {cert_shown}")
