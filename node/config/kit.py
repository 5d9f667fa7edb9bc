"""A node's view of its startup kit: verified, with its identity, config and TLS material loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flctl.provisioner import kit_layout as layout
from flctl.provisioner.errors import KitError
from flctl.provisioner.kit_info import KitInfo, read_kit
from flctl.provisioner.signing import verify_kit


@dataclass(frozen=True)
class NodeKit:
    info: KitInfo
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def root(self) -> Path:
        return self.info.path

    @property
    def target(self) -> str:
        """The server's address as `host:port`."""
        return f"{self.info.server_host}:{self.info.server_port}"


def load_kit(path: Path, verify: bool = True) -> NodeKit:
    """Read a kit; with `verify`, refuse one whose signature fails, naming each changed file."""
    if verify:
        report = verify_kit(path)
        if not report.ok:
            raise KitError(f"the kit in {path} failed verification: " + "; ".join(report.problems))
    info = read_kit(path)
    paths = layout.KitPaths.find(path)
    kind = info.kind
    try:
        return NodeKit(info, paths.ca_cert.read_bytes(), paths.cert(kind).read_bytes(),  # type: ignore[arg-type]
                       paths.key(kind).read_bytes())  # type: ignore[arg-type]
    except FileNotFoundError as exc:
        raise KitError(f"{exc.filename} is missing from the kit") from None
