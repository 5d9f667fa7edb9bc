"""The CRL a node enforces: loaded from disk, replaced at run time by a newer one signed by the CA."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from cryptography import x509


class CrlRefused(Exception):
    """A CRL that is not signed by this project's CA, or is older than the one installed."""


class Revocations:
    def __init__(self, ca_pem: bytes, path: Path) -> None:
        self._ca = x509.load_pem_x509_certificate(ca_pem)
        self._path = path
        self._lock = threading.Lock()
        self.number = 0
        self.pem = b""
        self._serials: frozenset[int] = frozenset()
        if path.is_file():
            with contextlib.suppress(CrlRefused):
                self.install(path.read_bytes(), persist=False)

    def __contains__(self, serial: object) -> bool:
        return serial in self._serials

    def install(self, pem: bytes, persist: bool = True) -> int:
        """Install `pem` if it is newer and signed by the CA; returns its CRL number."""
        try:
            crl = x509.load_pem_x509_crl(pem)
        except ValueError:
            raise CrlRefused("not a PEM certificate revocation list") from None
        if not crl.is_signature_valid(self._ca.public_key()):  # type: ignore[arg-type]
            raise CrlRefused("the CRL is not signed by this project's CA")
        try:
            number = int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        except x509.ExtensionNotFound:
            raise CrlRefused("the CRL has no CRL number") from None
        with self._lock:
            if number <= self.number:
                raise CrlRefused(f"CRL {number} is not newer than the installed CRL {self.number}")
            self._serials = frozenset(entry.serial_number for entry in crl)
            self.number, self.pem = number, pem
            if persist:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._path.with_name(self._path.name + ".tmp")
                tmp.write_bytes(pem)
                tmp.replace(self._path)
        return number
