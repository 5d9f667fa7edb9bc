"""Every participant's certificate the server knows, with its expiry: what `flctl certs`, the Prometheus metric
`flctl_certificate_days_left` and the `cert_expiring` alert read.

The server's own comes from its kit; a site's from the certificate it registered and heartbeats with (the site
registry); an admin's from the last call they made (`AdminSightings` records it, once per certificate, not once
per call).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from flctl.node.server.store import Store
from flctl.provisioner.kit_info import KitInfo


@dataclass(frozen=True)
class KnownCertificate:
    name: str
    kind: str  # server, site or admin
    org: str
    role: str
    not_after: float
    last_seen: float  # when a connection last showed it; 0 for the server's own


def own_certificate(info: KitInfo) -> KnownCertificate:
    """The server's certificate, from its kit."""
    return KnownCertificate(info.name, "server", info.org, "", info.not_after.timestamp(), 0.0)


def known_certificates(store: Store, own: KnownCertificate) -> list[KnownCertificate]:
    """The server's, every registered site's and every admin's seen, soonest to expire first."""
    found = [own]
    found += [KnownCertificate(s.name, "site", s.org, "", s.not_after, s.last_heartbeat) for s in store.sites()
              if s.not_after]
    found += [KnownCertificate(name, "admin", org, role, not_after, seen)
              for name, org, role, not_after, seen in store.admins()]
    return sorted(found, key=lambda c: (c.not_after, c.kind, c.name))


class AdminSightings:
    """Writes an admin's certificate to the store when it is new or changed (a renewed kit), or at most once an
    hour to keep `last_seen` fresh: an admin's calls cost no write of their own."""

    REFRESH_S = 3600.0

    def __init__(self, store: Store) -> None:
        self._store = store
        self._seen: dict[tuple[str, float], float] = {}
        self._lock = threading.Lock()

    def saw(self, name: str, org: str, role: str, not_after: float) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._seen.get((name, not_after))
            if last is not None and now - last < self.REFRESH_S:
                return
            self._seen[(name, not_after)] = now
        self._store.record_admin(name, org, role, not_after)
