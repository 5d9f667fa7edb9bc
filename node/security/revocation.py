"""The CRL a node enforces: checked at start, replaced at run time by a newer one signed by the CA.

Fail closed: a CRL file that is present but cannot be read, is not signed by this project's CA or is past its
next update stops the node at start (`CrlRefused`, which the start turns into exit code 2 naming the file). While
the node runs, `local/crl.pem` is re-read when its modification time changes (checked on every call that asks
whether a certificate is revoked, as `local/policy.yml` is); a newer good CRL replaces the one in force, and a bad
edit is refused loudly (logged as an error, and to `on_refused`, which the nodes send to their audit log) while the
last good CRL stays in force. A CRL that passes its next update while the node runs also stays in force (it is the
best list the node has), with an error logged once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

log = logging.getLogger("flctl.revocation")


class CrlRefused(Exception):
    """A CRL that cannot be read, is not signed by this project's CA, is past its next update, or is older than the
    one installed."""


@dataclass(frozen=True)
class CheckedCrl:
    """A CRL that parsed, verified against the CA, and carries a number."""

    pem: bytes
    number: int
    serials: frozenset[int]
    next_update: dt.datetime | None


def check_crl(pem: bytes, ca_pem: bytes, now: dt.datetime | None = None) -> CheckedCrl:
    """`pem` parsed and verified: signed by the CA in `ca_pem`, numbered, and not past its next update."""
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError:
        raise CrlRefused("it is not a PEM certificate revocation list (damaged or not a CRL)") from None
    ca = x509.load_pem_x509_certificate(ca_pem)
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise CrlRefused("it is not signed by this project's CA (its signature does not verify: changed, "
                         "damaged, or from another project)")
    try:
        number = int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        raise CrlRefused("it has no CRL number") from None
    next_update = crl.next_update_utc
    now = now or dt.datetime.now(dt.UTC)
    if next_update is not None and next_update < now:
        raise CrlRefused(f"CRL {number} is out of date: its next update was {next_update:%Y-%m-%d %H:%M} UTC; "
                         "issue a fresh one with `flctl provision crl -p PROJECT.yml`")
    return CheckedCrl(pem, number, frozenset(entry.serial_number for entry in crl), next_update)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class Revocations:
    """The CRL in force: the newest good one of the installed copy (`path`) and the operator's file (`watch`)."""

    def __init__(self, ca_pem: bytes, path: Path, watch: Path | None = None,
                 on_refused: Callable[[str, str], object] | None = None) -> None:
        """Raises CrlRefused, naming the file, when a CRL file present here is bad or the newest is out of date."""
        self._ca_pem = ca_pem
        self._path = path
        self._watch = watch
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self.number = 0
        self.pem = b""
        self._serials: frozenset[int] = frozenset()
        self._next_update: dt.datetime | None = None
        self._expiry_told = False
        found = [(p, self._read(p, expired_too=True)) for p in (path, watch) if p is not None and p.exists()]
        if found:
            file, newest = max(found, key=lambda pair: pair[1].number)
            try:
                check_crl(newest.pem, ca_pem)
            except CrlRefused as exc:
                raise CrlRefused(f"{file}: {exc}") from None
            self._use(newest, persist=file != path)
        self._stamp = _stamp(watch) if watch is not None else None

    def _read(self, path: Path, expired_too: bool = False) -> CheckedCrl:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise CrlRefused(f"{path}: cannot read it ({exc.strerror})") from None
        try:
            return check_crl(pem, self._ca_pem, now=dt.datetime.min.replace(tzinfo=dt.UTC) if expired_too else None)
        except CrlRefused as exc:
            raise CrlRefused(f"{path}: {exc}") from None

    def __contains__(self, serial: object) -> bool:
        if self._watch is not None:
            self._refresh()
        return serial in self._serials

    def _refresh(self) -> None:
        """Re-read the watched file when it changed: install a newer good CRL, refuse a bad one loudly."""
        stamp = _stamp(self._watch)  # type: ignore[arg-type]
        if stamp != self._stamp:
            with self._lock:
                if stamp == self._stamp:
                    return
                self._stamp = stamp
            if stamp is not None:
                try:
                    crl = self._read(self._watch)  # type: ignore[arg-type]
                    if crl.number > self.number:
                        self._use(crl, persist=True)
                        log.warning("installed CRL %d from %s (%d revoked)", crl.number, self._watch, len(crl.serials))
                except CrlRefused as exc:
                    self._refused(str(self._watch), str(exc))
        next_update = self._next_update
        if next_update is not None and not self._expiry_told and next_update < dt.datetime.now(dt.UTC):
            self._expiry_told = True
            log.error("the CRL in force (number %d) passed its next update (%s UTC); it stays in force, but issue a "
                      "fresh one with `flctl provision crl` and publish it", self.number,
                      f"{next_update:%Y-%m-%d %H:%M}")

    def _refused(self, origin: str, reason: str) -> None:
        log.error("refused a CRL, CRL %d stays in force: %s", self.number, reason)
        if self._on_refused is not None:
            self._on_refused(origin, reason)

    def _use(self, crl: CheckedCrl, persist: bool) -> None:
        with self._lock:
            if crl.number <= self.number:
                raise CrlRefused(f"CRL {crl.number} is not newer than the installed CRL {self.number}")
            self._serials, self.number, self.pem = crl.serials, crl.number, crl.pem
            self._next_update, self._expiry_told = crl.next_update, False
            if persist:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._path.with_name(self._path.name + ".tmp")
                tmp.write_bytes(crl.pem)
                os.replace(tmp, self._path)

    def install(self, pem: bytes, persist: bool = True) -> int:
        """Install `pem` if it is good (see `check_crl`) and newer than the CRL in force; returns its number."""
        crl = check_crl(pem, self._ca_pem)
        self._use(crl, persist)
        return crl.number

    def refuse(self, origin: str, reason: str) -> None:
        """Record a CRL refused from `origin` (a heartbeat's): logged as an error and sent to `on_refused`."""
        self._refused(origin, reason)
