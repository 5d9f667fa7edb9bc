"""Provision a project: issue what is missing, reuse what exists, write the next `prod_NN`.

    <workspace>/<project>/prod_NN/<participant>/     one kit per participant
    <workspace>/<project>/prod_NN/<participant>.zip  the same kit, zipped
    <workspace>/<project>/state/                     the CA and what it issued

Everything is built in a hidden temporary folder and renamed into place at the
end, so a failure leaves no half-written `prod_NN` behind.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from provisioner import kit_layout as layout
from provisioner import pki, signing
from provisioner.errors import ProvisionError
from provisioner.kit_files import KitFile, render_kit
from provisioner.project import Participant, Project
from provisioner.state import IssuedRecord, State, load_state, locked, new_state, save_state

Progress = Callable[[int, int, str], None]
_PROD = re.compile(r"prod_(\d+)")
WRITERS = 2  # measured: 1 is best on tmpfs (GIL), 2 on this disk (open() latency); 8 is worse on both


@dataclass
class KitResult:
    """One participant's kit as written."""

    name: str
    kind: str
    org: str
    role: str | None
    status: str  # "new", "kept" or "reissued"
    reason: str
    not_after: dt.datetime
    kit_dir: Path
    zip_path: Path
    external_key: bool


@dataclass
class ProvisionResult:
    project: str
    prod_dir: Path
    state_dir: Path
    ca_created: bool
    kits: list[KitResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """What to do about one participant's certificate."""

    who: Participant
    status: str
    reason: str


def plan(project: Project, state: State | None, now: dt.datetime, renew: frozenset[str] = frozenset()
         ) -> list[Decision]:
    """Pure: which certificates to keep, issue or reissue (`renew` names participants to reissue anyway)."""
    out = []
    for who in project.participants():
        rec = state.issued.get(who.name) if state else None
        if rec is None:
            out.append(Decision(who, "new", ""))
            continue
        reason = _reissue_reason(who, rec, state, now) or ("renewed" if who.name in renew else "")  # type: ignore[arg-type]
        out.append(Decision(who, "reissued" if reason else "kept", reason))
    return out


def _reissue_reason(who: Participant, rec: IssuedRecord, state: State, now: dt.datetime) -> str:
    if rec.kind != who.kind:
        return f"kind changed from {rec.kind} to {who.kind}"
    if rec.org != who.org:
        return f"org changed from {rec.org} to {who.org}"
    if rec.role != who.role:
        return f"role changed from {rec.role} to {who.role}"
    if list(who.san_hosts()) != rec.hosts:
        return "hosts changed"
    cert = rec.cert()
    if not pki.issued_by(cert, state.ca_cert):
        return "not issued by this CA"
    if cert.not_valid_after_utc <= now:
        return "certificate expired"
    return ""


def next_prod_dir(project_dir: Path) -> Path:
    numbers = [int(m.group(1)) for p in project_dir.glob("prod_*") if (m := _PROD.fullmatch(p.name))]
    return project_dir / f"prod_{(max(numbers) + 1 if numbers else 0):02d}"


def provision(project: Project, workspace: Path, passphrase: bytes | None = None,
              now: dt.datetime | None = None, progress: Progress | None = None,
              renew: frozenset[str] = frozenset()) -> ProvisionResult:
    """Write the next `prod_NN` for `project` under `workspace` and update the state.

    `renew` names participants whose certificates are reissued even though nothing changed.
    """
    unknown = sorted(renew - {p.name for p in project.participants()})
    if unknown:
        raise ProvisionError(f"cannot renew {', '.join(unknown)}: not a participant of project '{project.name}'")
    now = now or dt.datetime.now(dt.UTC)
    project_dir = workspace / project.name
    with locked(project_dir):
        state = load_state(project_dir, passphrase)
        result = ProvisionResult(project.name, next_prod_dir(project_dir), project_dir / "state", state is None)
        if state is None:
            state = new_state(project.name, project.ca.key, project.ca.valid_days, now)
        elif state.key_type != project.ca.key:
            result.warnings.append(f"the project CA already exists with {state.key_type} keys; "
                                   f"ca.key: {project.ca.key} was ignored")
        if passphrase and not state.encrypted and not result.ca_created:
            result.warnings.append("the state folder's keys are now encrypted with the given passphrase")
        decisions = plan(project, state, now, renew)
        tmp = project_dir / f".{result.prod_dir.name}.tmp-{os.getpid()}"
        try:
            tmp.mkdir()
            # Certificates and signatures are computed here; files are written by a few threads, since
            # creating many small files is bound by the disk's latency, not by the CPU.
            with ThreadPoolExecutor(max_workers=WRITERS) as pool:
                pending = []
                for decision in decisions:
                    rec = _certificate(state, decision, project.certs.valid_days, now)
                    files = kit_files(project, decision.who, state, rec, now)
                    pending.append(pool.submit(_write_kit, tmp, decision.who.name, files, now))
                    result.kits.append(KitResult(
                        decision.who.name, decision.who.kind, decision.who.org, decision.who.role, decision.status,
                        decision.reason, rec.cert().not_valid_after_utc, result.prod_dir / decision.who.name,
                        result.prod_dir / f"{decision.who.name}.zip", rec.key_pem is None))
                for done, (future, kit) in enumerate(zip(pending, result.kits, strict=True), start=1):
                    future.result()
                    if progress:
                        progress(done, len(decisions), kit.name)
            save_state(project_dir, state, passphrase)
            tmp.rename(result.prod_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return result


def _certificate(state: State, decision: Decision, valid_days: int, now: dt.datetime) -> IssuedRecord:
    """Reuse, issue or reissue; records the outcome in `state`."""
    who = decision.who
    old = state.issued.get(who.name)
    if decision.status == "kept" and old is not None:
        return old
    if old is not None and old.key_source == "csr":
        # The participant keeps its own key: certify the same public key again.
        public_key = old.cert().public_key()
        key_pem = None
    else:
        key = pki.generate_key(state.key_type)
        public_key, key_pem = key.public_key(), pki.key_pem(key).decode()
    try:
        cert = pki.issue(state.ca_cert, state.ca_key, who, public_key, valid_days, now)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ProvisionError(f"cannot issue a certificate for {who.name}: {exc}") from None
    rec = IssuedRecord(who.name, who.kind, who.org, who.role, list(who.san_hosts()), pki.cert_pem(cert).decode(),
                       key_pem, old.key_source if old and key_pem is None else "provisioner",
                       now.isoformat(timespec="seconds"))
    state.issued[who.name] = rec
    return rec


def kit_files(project: Project, who: Participant, state: State, rec: IssuedRecord, now: dt.datetime
              ) -> dict[str, KitFile]:
    """Every file of one kit, `startup/signature.json` included (pure)."""
    key_pem = rec.key_pem.encode() if rec.key_pem else None
    files = render_kit(project, who, pki.cert_pem(state.ca_cert), rec.cert_pem.encode(), key_pem)
    prefix = f"{layout.STARTUP}/"
    startup = {name[len(prefix):]: f.data for name, f in files.items() if name.startswith(prefix)}
    files[prefix + layout.SIGNATURE] = KitFile(
        signing.sign_startup(startup, who, project.name, state.ca_key, state.ca_cert, key_pem is None, now), 0o644)
    return files


def write_files(root: Path, files: dict[str, KitFile]) -> None:
    for rel, f in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, f.mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(f.data)
        os.chmod(path, f.mode)


def write_zip(path: Path, top: str, files: dict[str, KitFile], now: dt.datetime) -> None:
    stamp = now.timetuple()[:6]
    with zipfile.ZipFile(path, "x", zipfile.ZIP_STORED) as archive:
        for rel, f in sorted(files.items()):
            info = zipfile.ZipInfo(f"{top}/{rel}", date_time=stamp)
            info.external_attr = (0o100000 | f.mode) << 16
            archive.writestr(info, f.data)


def _write_kit(prod: Path, name: str, files: dict[str, KitFile], now: dt.datetime) -> None:
    write_files(prod / name, files)
    write_zip(prod / f"{name}.zip", name, files, now)

