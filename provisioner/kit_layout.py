"""Where things live in a startup kit: the contract between provisioner, cloud and node.

    <kit>/startup/  ca.crt  <kind>.crt  <kind>.key  node.yml | console.yml  start.sh  stop.sh  signature.json
    <kit>/local/    policy.yml  privacy.yml  resources.yml   (site-owned, never signed, never overwritten)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flctl.provisioner.participant_kinds import Kind

STARTUP = "startup"
LOCAL = "local"
CA_CERT = "ca.crt"
SIGNATURE = "signature.json"
NODE_CONFIG = "node.yml"
CONSOLE_CONFIG = "console.yml"
START_SCRIPT = "start.sh"
STOP_SCRIPT = "stop.sh"
LOCAL_FILES = ("policy.yml", "privacy.yml", "resources.yml")


def cert_name(kind: Kind) -> str:
    return f"{kind}.crt"


def key_name(kind: Kind) -> str:
    return f"{kind}.key"


def config_name(kind: Kind) -> str:
    return CONSOLE_CONFIG if kind == "admin" else NODE_CONFIG


@dataclass(frozen=True)
class KitPaths:
    """Paths inside one kit folder."""

    root: Path

    @classmethod
    def find(cls, path: Path) -> KitPaths:
        """Accept the kit folder itself or its `startup/` folder."""
        if path.name == STARTUP and not (path / STARTUP).is_dir():
            return cls(path.parent)
        return cls(path)

    @property
    def startup(self) -> Path:
        return self.root / STARTUP

    @property
    def local(self) -> Path:
        return self.root / LOCAL

    @property
    def ca_cert(self) -> Path:
        return self.startup / CA_CERT

    @property
    def signature(self) -> Path:
        return self.startup / SIGNATURE

    def cert(self, kind: Kind) -> Path:
        return self.startup / cert_name(kind)

    def key(self, kind: Kind) -> Path:
        return self.startup / key_name(kind)

    def config(self, kind: Kind) -> Path:
        return self.startup / config_name(kind)

    def kind(self) -> Kind | None:
        """The participant kind, from which config file and certificate the kit holds."""
        if (self.startup / CONSOLE_CONFIG).is_file():
            return "admin"
        if self.cert("server").is_file():
            return "server"
        if self.cert("site").is_file():
            return "site"
        if self.cert("relay").is_file():
            return "relay"
        return None
