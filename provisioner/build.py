"""Provision a project: issue what is missing, reuse what exists, write the next `prod_NN`.

    <workspace>/<project>/prod_NN/<participant>/     one kit per participant (0700)
    <workspace>/<project>/prod_NN/<participant>.zip  the same kit, zipped (0600)
    <workspace>/<project>/prod_NN/<participant>.zip.enc  the zip encrypted for delivery (0600), when asked
    <workspace>/<project>/state/                     the CA and what it issued

Everything is built in a hidden temporary folder and renamed into place at the
end, so a failure leaves no half-written `prod_NN` behind. Kits are made (key,
certificate, files, signature, zip) by this process and, for big projects, by
forked helpers, each writing its own kit folders (`fork_pool`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from flctl.provisioner import dir_spread, fork_pool, gc_pause, pki, signing
from flctl.provisioner import kit_layout as layout
from flctl.provisioner.errors import InputError, Problem, ProvisionError
from flctl.provisioner.he_context import CLIENT_CONTEXT, SERVER_CONTEXT, HeContexts, project_contexts
from flctl.provisioner.kit_encryption import SUFFIX, Delivery
from flctl.provisioner.kit_files import KitFile, KitRenderer
from flctl.provisioner.kit_writer import FOLDER_MODE, write_files, write_private, write_zip
from flctl.provisioner.project import Participant, Project
from flctl.provisioner.state import IssuedRecord, State, load_state, locked, new_state, save_state, state_dir

Progress = Callable[[int, int, str], None]
_PROD = re.compile(r"prod_(\d+)")
KITS_PER_PROCESS = 50  # a forked helper costs ~10 ms (measured); taking 50 kits off this process saves ~35


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
    encrypted_zip: Path | None = None  # NAME.zip.enc, when this run encrypted the kit for delivery


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
              renew: frozenset[str] = frozenset(), workers: int | None = None,
              delivery: Delivery | None = None) -> ProvisionResult:
    """Write the next `prod_NN` for `project` under `workspace` and update the state.

    `renew` names participants whose certificates are reissued even though nothing changed. `workers`
    is how many processes make kits (default: one per CPU for big projects, when this process runs a
    single thread; see `fork_pool.worker_count`). `delivery` also writes `NAME.zip.enc` beside each zip.
    """
    unknown = sorted(renew - {p.name for p in project.participants()})
    if unknown:
        raise ProvisionError(f"cannot renew {', '.join(unknown)}: not a participant of project '{project.name}'")
    strangers = sorted(set(delivery.recipients if delivery else ()) - {p.name for p in project.participants()})
    if strangers:
        raise InputError([Problem("command line", None, "--encrypt-to", f"{', '.join(strangers)} is not a "
                                  f"participant of project '{project.name}'")])
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
        he = _he_contexts(project, project_dir, result.warnings)
        decisions = plan(project, state, now, renew)
        # .prod_NN.tmp-PID/prod becomes prod_NN; both are flagged for ext4 to spread what they hold
        # over free block groups (see dir_spread), and the flag is cleared before the rename.
        outer = project_dir / f".{result.prod_dir.name}.tmp-{os.getpid()}"
        tmp = outer / "prod"
        try:
            outer.mkdir(mode=FOLDER_MODE)
            dir_spread.mark_top(outer)
            tmp.mkdir(mode=FOLDER_MODE)
            spread = dir_spread.mark_top(tmp)
            maker = KitMaker(project, state, now, delivery, he)
            count = workers or fork_pool.worker_count(len(decisions), KITS_PER_PROCESS)
            finished = 0

            def done(i: int) -> None:
                nonlocal finished
                finished += 1
                if progress:
                    progress(finished, len(decisions), decisions[i].who.name)

            with gc_pause.paused():  # speed only (see gc_pause)
                made = fork_pool.run_sliced(decisions, lambda d: maker.make(d, tmp), count, done)
            for decision, kit in zip(decisions, made, strict=True):
                who = decision.who
                state.issued[who.name] = rec = IssuedRecord(**kit["record"])
                result.kits.append(KitResult(
                    who.name, who.kind, who.org, who.role, decision.status, decision.reason,
                    dt.datetime.fromisoformat(kit["not_after"]), result.prod_dir / who.name,
                    result.prod_dir / f"{who.name}.zip", rec.key_pem is None,
                    result.prod_dir / f"{who.name}{SUFFIX}" if kit["encrypted"] else None))
            if spread:
                dir_spread.mark_top(tmp, on=False)
            save_state(project_dir, state, passphrase)
            tmp.rename(result.prod_dir)
        except BaseException:
            shutil.rmtree(outer, ignore_errors=True)
            raise
        with contextlib.suppress(OSError):
            outer.rmdir()
    return result


def _he_contexts(project: Project, project_dir: Path, warnings: list[str]) -> HeContexts | None:
    """The project's CKKS contexts when project.yml asks for homomorphic encryption, else None."""
    spec = project.homomorphic_encryption
    return project_contexts(state_dir(project_dir), spec, warnings) if spec is not None else None


class KitMaker:
    """Makes the kits of one run; what they all share (issuer, renderer, CA bytes) is prepared once."""

    def __init__(self, project: Project, state: State, now: dt.datetime, delivery: Delivery | None = None,
                 he: HeContexts | None = None) -> None:
        self.project, self.state, self.now, self.delivery, self.he = project, state, now, delivery, he
        self.issuer = pki.Issuer(state.ca_cert, state.ca_key)
        self.renderer = KitRenderer(project)
        self.ca_pem = pki.cert_pem(state.ca_cert)
        self.ca_sha256 = pki.fingerprint(state.ca_cert)

    def make(self, decision: Decision, prod: Path) -> dict[str, Any]:
        """Certificate, files, signature, folder, zip (and its encrypted form) of one kit; returns its record
        as JSON-able data."""
        name = decision.who.name
        rec, cert = self.certificate(decision)
        files = self.files(decision.who, rec)
        write_files(prod / name, files)
        archive = write_zip(prod / f"{name}.zip", name, files, self.now)
        sealed = self.delivery.encrypt(name, archive) if self.delivery else None
        if sealed is not None:
            write_private(prod / f"{name}{SUFFIX}", sealed)
        return {"record": dict(vars(rec)), "not_after": cert.not_valid_after_utc.isoformat(),
                "encrypted": sealed is not None}

    def certificate(self, decision: Decision) -> tuple[IssuedRecord, x509.Certificate]:
        """Reuse, issue or reissue (`state` is left as it is: the caller records the outcome)."""
        who = decision.who
        old = self.state.issued.get(who.name)
        if decision.status == "kept" and old is not None:
            return old, old.cert()
        if old is not None and old.key_source == "csr":
            # The participant keeps its own key: certify the same public key again.
            public_key = old.cert().public_key()
            key_pem = None
        else:
            key = pki.generate_key(self.state.key_type)
            public_key, key_pem = key.public_key(), pki.key_pem(key).decode()
        try:
            cert = self.issuer.issue(who, public_key, self.project.certs.valid_days, self.now)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ProvisionError(f"cannot issue a certificate for {who.name}: {exc}") from None
        rec = IssuedRecord(who.name, who.kind, who.org, who.role, list(who.san_hosts()), pki.cert_pem(cert).decode(),
                           key_pem, old.key_source if old and key_pem is None else "provisioner",
                           self.now.isoformat(timespec="seconds"))
        return rec, cert

    def files(self, who: Participant, rec: IssuedRecord) -> dict[str, KitFile]:
        """Every file of one kit, `startup/signature.json` included (pure)."""
        key_pem = rec.key_pem.encode() if rec.key_pem else None
        files = self.renderer.render(who, self.ca_pem, rec.cert_pem.encode(), key_pem)
        prefix = f"{layout.STARTUP}/"
        if self.he is not None and who.kind == "server":  # the public context: it adds, it cannot decrypt
            files[prefix + SERVER_CONTEXT] = KitFile(self.he.public, 0o644)
        elif self.he is not None and who.kind == "site":  # the secret key: sites only
            files[prefix + CLIENT_CONTEXT] = KitFile(self.he.secret, 0o600)
        startup = {name[len(prefix):]: f.data for name, f in files.items() if name.startswith(prefix)}
        files[prefix + layout.SIGNATURE] = KitFile(signing.sign_startup(
            startup, who, self.project.name, self.state.ca_key, self.state.ca_cert, key_pem is None, self.now,
            ca_sha256=self.ca_sha256), 0o644)
        return files


def kit_files(project: Project, who: Participant, state: State, rec: IssuedRecord, now: dt.datetime
              ) -> dict[str, KitFile]:
    """Every file of one kit, `startup/signature.json` included (pure)."""
    return KitMaker(project, state, now).files(who, rec)
