"""Read who a startup kit belongs to: identity, org, role, expiry and server address."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from pydantic import ValidationError

from flctl.provisioner import kit_layout as layout
from flctl.provisioner import pki
from flctl.provisioner.errors import KitError
from flctl.provisioner.kit_config import ConsoleConfig, NodeConfig

EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class KitInfo:
    path: Path
    project: str
    name: str
    kind: str
    org: str
    role: str | None
    server_host: str
    server_port: int
    not_after: dt.datetime
    ca_not_after: dt.datetime
    fingerprint: str
    config: NodeConfig | ConsoleConfig

    def days_left(self, now: dt.datetime | None = None) -> int:
        now = now or dt.datetime.now(dt.UTC)
        return (min(self.not_after, self.ca_not_after) - now).days

    def expiring(self, now: dt.datetime | None = None) -> bool:
        return self.days_left(now) < EXPIRY_WARNING_DAYS


def read_kit(path: Path) -> KitInfo:
    """Load a kit's config and certificates; KitError says what is missing or malformed."""
    paths = layout.KitPaths.find(path)
    if not paths.startup.is_dir():
        raise KitError(f"{path} is not a startup kit (no {layout.STARTUP}/ folder)")
    kind = paths.kind()
    if kind is None:
        raise KitError(f"{paths.startup} holds no node.yml or console.yml with its certificate")
    config_path = paths.config(kind)
    try:
        raw = yaml.safe_load(config_path.read_text())
        model = ConsoleConfig if kind == "admin" else NodeConfig
        config = model.model_validate(raw)
    except FileNotFoundError:
        raise KitError(f"{config_path} is missing") from None
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise KitError(f"{config_path} is not a valid {config_path.name} ({first})") from None
    cert = _load_cert(paths.cert(kind))
    ca = _load_cert(paths.ca_cert)
    try:
        who = pki.identity_of(cert)
    except ValueError as exc:
        raise KitError(f"{paths.cert(kind)}: {exc}") from None
    return KitInfo(paths.root, config.project, who.name, who.kind, who.org, who.role, config.server.host,
                   config.server.port, cert.not_valid_after_utc, ca.not_valid_after_utc, pki.fingerprint(cert),
                   config)


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise KitError(f"{path} is missing") from None
    except (OSError, ValueError):
        raise KitError(f"{path} is not a PEM certificate") from None
