"""What a server or site node reads from its kit and workspace at start: its config, policy and CRL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flctl.node.config.kit import NodeKit
from flctl.node.config.privacy import load_privacy
from flctl.node.errors import NodeError
from flctl.node.security.authz import PolicyError, PolicyFile
from flctl.node.security.revocation import CrlRefused, Revocations
from flctl.provisioner.errors import KitError
from flctl.provisioner.kit_config import NodeConfig


def node_config(kit: NodeKit, kind: str, workspace: Path) -> NodeConfig:
    """The kit's node.yml, refusing a kit of the wrong kind; creates the workspace."""
    if kit.info.kind != kind:
        raise NodeError(f"{kit.root} is a {kit.info.kind} kit; start a {kind} from a {kind}'s kit")
    config = kit.info.config
    assert isinstance(config, NodeConfig)
    load_privacy(kit.root / "local" / "privacy.yml")  # checked at start: a misspelt key stops the node
    workspace.mkdir(parents=True, exist_ok=True)
    return config


def policy_and_revocations(kit: NodeKit, workspace: Path, on_crl_refused: Callable[[str, str], object] | None = None
                           ) -> tuple[PolicyFile, Revocations]:
    """The site-owned policy (`local/policy.yml`) and the CRL: the newest of WORKSPACE/crl.pem and `local/crl.pem`,
    `local/crl.pem` re-read when it changes. A CRL file that is there but bad stops the start (KitError, exit 2)."""
    try:
        policy = PolicyFile(kit.root / "local" / "policy.yml")
    except PolicyError as exc:
        raise NodeError(f"cannot start: {exc}") from None
    try:
        revocations = Revocations(kit.ca_pem, workspace / "crl.pem", kit.root / "local" / "crl.pem", on_crl_refused)
    except CrlRefused as exc:
        raise KitError(f"cannot start: the CRL {exc}; replace the file with the project's current CRL "
                       "(WORKSPACE/<project>/state/crl.pem on the provisioner, `flctl provision crl` makes a fresh "
                       "one) and start again") from None
    return policy, revocations
