"""What a server or site node reads from its kit and workspace at start: its config, policy, CRL and its
flow-control window."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import yaml

from node.authz import PolicyError, PolicyFile
from node.errors import NodeError
from node.kit import NodeKit
from node.revocation import CrlRefused, Revocations
from node.tls import CHUNK, WINDOW_MB
from provisioner.errors import KitError
from provisioner.kit_config import NodeConfig


def node_config(kit: NodeKit, kind: str, workspace: Path) -> NodeConfig:
    """The kit's node.yml, refusing a kit of the wrong kind; creates the workspace."""
    if kit.info.kind != kind:
        raise NodeError(f"{kit.root} is a {kit.info.kind} kit; start a {kind} from a {kind}'s kit")
    config = kit.info.config
    assert isinstance(config, NodeConfig)
    workspace.mkdir(parents=True, exist_ok=True)
    return config


def policy_and_revocations(kit: NodeKit, workspace: Path) -> tuple[PolicyFile, Revocations]:
    """The site-owned policy (`local/policy.yml`) and the CRL: the newest of WORKSPACE/crl.pem and `local/crl.pem`."""
    try:
        policy = PolicyFile(kit.root / "local" / "policy.yml")
    except PolicyError as exc:
        raise NodeError(f"cannot start: {exc}") from None
    revocations = Revocations(kit.ca_pem, workspace / "crl.pem")
    kit_crl = kit.root / "local" / "crl.pem"
    if kit_crl.is_file():
        with contextlib.suppress(CrlRefused):
            revocations.install(kit_crl.read_bytes())
    return policy, revocations


MAX_WINDOW_MB = 1024


def stream_window_bytes(path: Path) -> int:
    """`stream_window_mb` from a node's own `local/resources.yml` (site-owned) at `path`, in bytes: the flow-control
    window of each gRPC stream it receives on (default `WINDOW_MB`; 0: gRPC's adaptive window). KitError naming the
    file, the key and what is allowed when the value is not one."""
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return WINDOW_MB * CHUNK
    except (OSError, yaml.YAMLError) as exc:
        raise KitError(f"cannot read {path}: {exc}") from None
    value = document.get("stream_window_mb", WINDOW_MB) if isinstance(document, dict) else WINDOW_MB
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or \
            not 0 <= value <= MAX_WINDOW_MB:
        raise KitError(f"{path}: stream_window_mb must be a number of MiB from 0 to {MAX_WINDOW_MB} (0: gRPC's "
                        f"adaptive window; default {WINDOW_MB}), not {value!r}")
    return int(value * CHUNK)
