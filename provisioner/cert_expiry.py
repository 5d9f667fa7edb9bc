"""Every certificate a project's CA issued, with how long each has left: read offline from the state folder.

`issued.json` keeps each participant's certificate beside its (possibly encrypted) key; listing reads the
certificates only, so no passphrase is needed. `flctl certs -p PROJECT.yml` shows these; `flctl certs renew
--expiring DAYS` picks those under DAYS and re-issues them through `build.provision(renew=...)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from flctl.provisioner.errors import StateError
from flctl.provisioner.state import ISSUED, state_dir

DAY_S = 86400.0


@dataclass(frozen=True)
class IssuedCertificate:
    """One participant's certificate as the provisioner last issued it."""

    name: str
    kind: str  # server, site or admin
    org: str
    role: str
    not_after: float  # seconds since the epoch (UTC)
    serial: str

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / DAY_S


def issued_certificates(project_dir: Path) -> list[IssuedCertificate]:
    """The certificates in `<project_dir>/state/issued.json`, soonest to expire first; StateError when there is no
    state there or it cannot be read."""
    path = state_dir(project_dir) / ISSUED
    try:
        meta = json.loads(path.read_text())
        records = meta["issued"]
    except FileNotFoundError:
        raise StateError(f"{project_dir} was never provisioned here (no {path}); give the workspace that holds its "
                         "state folder with -w DIR") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{path} is damaged ({exc}); restore it from a backup") from None
    out = []
    for name, rec in records.items():
        try:
            cert = x509.load_pem_x509_certificate(rec["cert_pem"].encode())
        except (KeyError, ValueError, AttributeError) as exc:
            raise StateError(f"{path}: the certificate of {name!r} cannot be read ({exc}); restore it from a "
                             "backup") from None
        out.append(IssuedCertificate(name, str(rec.get("kind", "")), str(rec.get("org", "")),
                                     str(rec.get("role") or ""), cert.not_valid_after_utc.timestamp(),
                                     format(cert.serial_number, "x")))
    return sorted(out, key=lambda c: (c.not_after, c.name))


def expiring(certs: list[IssuedCertificate], within_days: float, now: float) -> list[IssuedCertificate]:
    """Pure: the certificates with fewer than `within_days` days left (expired ones included)."""
    return [c for c in certs if c.days_left(now) < within_days]
