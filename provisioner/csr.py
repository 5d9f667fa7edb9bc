"""Keys that never leave a participant: request a certificate, sign the request, complete the kit.

1. On the participant's machine: `make_request` makes a key and a CSR.
2. At the provisioner: `sign_request` checks the CSR against project.yml, issues the
   certificate and writes a kit that holds no private key.
3. Back on the participant's machine: `complete_kit` adds the key to that kit.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from flctl.provisioner import build, pki
from flctl.provisioner import kit_layout as layout
from flctl.provisioner.errors import InputError, KitError, Problem
from flctl.provisioner.kit_writer import write_files, write_zip
from flctl.provisioner.names import check_admin_name, check_host, check_simple_name
from flctl.provisioner.project import KeyType, Kind, Project, Role
from flctl.provisioner.signing import Verification, verify_kit
from flctl.provisioner.state import IssuedRecord, load_state, locked, new_state, save_state, write_atomic


@dataclass(frozen=True)
class Request:
    key_path: Path
    csr_path: Path


def make_request(name: str, org: str, kind: Kind, role: Role | None, out_dir: Path,
                 key_type: KeyType = "ec-p256") -> Request:
    """Write `<name>.key` (0600) and `<name>.csr` into `out_dir`; never overwrites."""
    problems = []
    for field, value, check in (("name", name, check_admin_name if kind == "admin" else
                                 (check_host if kind == "server" else check_simple_name)),
                                ("org", org, check_simple_name)):
        try:
            check(value)
        except ValueError as exc:
            problems.append(Problem("command line", None, field, str(exc)))
    if kind == "admin" and role is None:
        problems.append(Problem("command line", None, "role", "an admin needs --role "
                                "(project_admin, org_admin, lead or member)"))
    if kind != "admin" and role is not None:
        problems.append(Problem("command line", None, "role", "only admins have a role"))
    if problems:
        raise InputError(problems)
    key = pki.generate_key(key_type)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(pki.subject_for(name, org, kind, role))
           .sign(key, hashes.SHA256()))
    out_dir.mkdir(parents=True, exist_ok=True)
    req = Request(out_dir / f"{name}.key", out_dir / f"{name}.csr")
    for path in (req.key_path, req.csr_path):
        if path.exists():
            raise InputError([Problem(str(path), None, "", "already exists; move it away or choose another -o")])
    write_atomic(req.key_path, pki.key_pem(key), 0o600)
    write_atomic(req.csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644)
    return req


def read_request(path: Path) -> tuple[pki.CertIdentity, x509.CertificateSigningRequest]:
    shown = str(path)
    try:
        csr = x509.load_pem_x509_csr(path.read_bytes())
    except FileNotFoundError:
        raise InputError([Problem(shown, None, "", "no such file")]) from None
    except (OSError, ValueError):
        raise InputError([Problem(shown, None, "", "is not a PEM certificate signing request")]) from None
    if not csr.is_signature_valid:
        raise InputError([Problem(shown, None, "", "its signature does not match its key (corrupted request)")])
    try:
        return pki.identity_of(csr), csr  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError([Problem(shown, None, "subject", str(exc))]) from None


def sign_request(project: Project, workspace: Path, csr_path: Path, out_dir: Path | None = None,
                 passphrase: bytes | None = None, now: dt.datetime | None = None) -> build.KitResult:
    """Certify the CSR's key for the participant it names and write a kit without a private key."""
    now = now or dt.datetime.now(dt.UTC)
    who_csr, csr = read_request(csr_path)
    who = next((p for p in project.participants() if p.name == who_csr.name), None)
    shown = str(csr_path)
    if who is None:
        raise InputError([Problem(shown, None, "subject", f"'{who_csr.name}' is not a participant of project "
                                  f"'{project.name}'; add it to project.yml first")])
    for field in ("kind", "org", "role"):
        if getattr(who, field) != getattr(who_csr, field):
            raise InputError([Problem(shown, None, field, f"the request says {getattr(who_csr, field)!r} but "
                                      f"project.yml says {getattr(who, field)!r}")])
    project_dir = workspace / project.name
    with locked(project_dir):
        state = load_state(project_dir, passphrase) or new_state(project.name, project.ca.key,
                                                                 project.ca.valid_days, now)
        try:
            cert = pki.issue(state.ca_cert, state.ca_key, who, csr.public_key(),  # type: ignore[arg-type]
                             project.certs.valid_days, now)
        except ValueError as exc:
            raise InputError([Problem(shown, None, "", f"cannot be certified: {exc}")]) from None
        rec = IssuedRecord(who.name, who.kind, who.org, who.role, list(who.san_hosts()),
                           pki.cert_pem(cert).decode(), None, "csr", now.isoformat(timespec="seconds"))
        state.issued[who.name] = rec
        target = out_dir or project_dir / "signed" / who.name
        files = build.kit_files(project, who, state, rec, now)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        zip_path = target.parent / f"{target.name}.zip"
        zip_tmp = target.parent / f".{target.name}.zip.tmp-{os.getpid()}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_files(tmp, files)
            write_zip(zip_tmp, who.name, files, now)
            save_state(project_dir, state, passphrase)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
            zip_tmp.replace(zip_path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            zip_tmp.unlink(missing_ok=True)
            raise
    return build.KitResult(who.name, who.kind, who.org, who.role, "new", "signed from a request",
                           cert.not_valid_after_utc, target, zip_path, True)


def complete_kit(kit: Path, key_path: Path) -> Verification:
    """Put the participant's own key into a kit made from its request, then verify the kit."""
    paths = layout.KitPaths.find(kit)
    kind = paths.kind()
    if kind is None:
        raise KitError(f"{kit} is not a startup kit")
    try:
        key = pki.load_key(key_path.read_bytes())
    except FileNotFoundError:
        raise InputError([Problem(str(key_path), None, "", "no such file")]) from None
    except (OSError, TypeError, ValueError):
        raise InputError([Problem(str(key_path), None, "", "is not an unencrypted PEM private key")]) from None
    try:
        cert = x509.load_pem_x509_certificate(paths.cert(kind).read_bytes())
    except (OSError, ValueError):
        raise KitError(f"{paths.cert(kind)} is missing or not a certificate") from None
    if not pki.key_matches(key, cert):
        raise InputError([Problem(str(key_path), None, "", f"does not match {paths.cert(kind)}; use the key "
                                  "made with the request that was signed")])
    target = paths.key(kind)
    if target.exists() and target.read_bytes() != pki.key_pem(key):
        raise InputError([Problem(str(target), None, "", "already holds a different key")])
    write_atomic(target, pki.key_pem(key), 0o600)
    return verify_kit(paths.root)
