"""`flctl preflight`: before a node starts (or when one will not connect), check one kit on this machine, or every
host of an inventory over SSH, one row per check (flctl.cloud.preflight_checks).

For a kit, from this machine: the kit's signature and every certificate's validity; the server's name resolves, its
port answers, a TLS handshake with the kit's certificate (TLS 1.3, ALPN h2, the server's certificate issued by the
kit's CA and covering the name dialled); the server's clock and versions from its `ServerInfo` answer; this
machine's Python, flctl and free disk, and, for the server's kit, its port free to listen on. For an inventory, the
same per host's kit, with the host's side (Python, flctl, disk, the server's name, port and TLS as the host sees
them, the port free on the server's host, the host's clock) found over SSH, as `flctl deploy` reaches each host; a
playbook through the inventory `flctl play` rolls out.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from flctl.cloud import preflight_checks as checks
from flctl.cloud import preflight_probes as probes
from flctl.cloud.preflight_checks import Row, Status
from flctl.provisioner import pki
from flctl.provisioner.kit_info import KitInfo, read_kit
from flctl.provisioner.kit_layout import KitPaths

if TYPE_CHECKING:
    from flctl.cloud.connector import Connector
    from flctl.cloud.inventory import HostSpec, Inventory
    from flctl.node.admin.server_info import ServerInfo

TIMEOUT_S = 5.0
HERE = "this machine"


@dataclass
class Report:
    """One participant's rows: checked with its kit, on `where` (this machine or its inventory host)."""

    participant: str
    where: str
    rows: list[Row] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"participant": self.participant, "where": self.where, "check": r.name, "status": str(r.status),
                 "sentence": r.sentence, "connection": r.connection} for r in self.rows]


@dataclass(frozen=True)
class ServerFacts:
    """What the server said (None: it could not be asked) and, when it could not, the row that says why."""

    info: ServerInfo | None = None
    problem: Row | None = None


def outcome(reports: list[Report]) -> int:
    """0 when nothing failed; 3 when every failure is a failure to connect; else 1."""
    failed = [r for report in reports for r in report.rows if r.status == Status.FAIL]
    if not failed:
        return 0
    return 3 if all(r.connection for r in failed) else 1


# ---- a kit, on this machine ------------------------------------------------------------------------------------------
def check_kit(kit: Path, timeout_s: float = TIMEOUT_S) -> Report:
    """Every check of one kit from this machine. A folder that is not a kit raises KitError (exit 2)."""
    info = read_kit(kit)
    rows = kit_rows(info)
    network, server = network_rows(info, timeout_s)
    rows += network
    rows.append(_clock_here(server))
    server_python = server.info.python_version if server.info else None
    server_flctl = server.info.flctl_version if server.info else None
    rows.append(checks.python_version(probes.environment_python(), HERE, server_python))
    rows.append(checks.flctl_version(_flctl_here(), HERE, server_flctl))
    workspace = info.path / "workspace"
    rows.append(checks.free_disk(probes.free_mb(workspace), str(workspace), HERE))
    if info.kind == "server":
        listen = getattr(info.config, "listen", None) or info.config.server
        rows.append(checks.listen_port(listen.port, HERE, probes.port_taken(listen.port), server.info is not None))
    return Report(info.name, HERE, rows)


def kit_rows(info: KitInfo, now: dt.datetime | None = None) -> list[Row]:
    """The kit's signature and each certificate in it (its own and the CA's)."""
    from flctl.provisioner.signing import verify_kit

    now = now or dt.datetime.now(dt.UTC)
    paths = KitPaths.find(info.path)
    rows = [checks.kit_signature(verify_kit(info.path).problems)]
    own = paths.cert(info.kind)  # type: ignore[arg-type]
    for label, whose, path in ((info.name, f"{info.name}'s certificate", own),
                               ("CA", "the project CA's certificate", paths.ca_cert)):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        rows.append(checks.certificate_validity(label, whose, cert.not_valid_before_utc, cert.not_valid_after_utc,
                                                now))
    return rows


def network_rows(info: KitInfo, timeout_s: float) -> tuple[list[Row], ServerFacts]:
    """Name, port, TLS and the server's certificate, then the server's own answer; each check that needs one that
    failed says so. A site on `transport: wss` is checked through its tunnel instead (`_wss_rows`)."""
    transport = _transport(info)
    if transport == "wss":
        return _wss_rows(info, timeout_s)
    host, port = info.server_host, info.server_port
    addresses, dns_error = probes.resolve(host)
    dns = checks.resolves(host, addresses, dns_error)
    if dns.status == Status.FAIL:
        return [dns, *_skipped(["port", "tls", "server"], dns)], ServerFacts(problem=dns)
    reached = checks.port_open(host, port, probes.connect(host, port, timeout_s))
    rows = [dns, reached]
    if reached.status == Status.FAIL:
        return rows + _skipped(["tls", "server"], reached), ServerFacts(problem=reached)
    paths = KitPaths.find(info.path)
    shake = probes.handshake(host, port, paths.cert(info.kind), paths.key(info.kind),  # type: ignore[arg-type]
                             timeout_s)
    if shake.error is not None or shake.cert is None:
        rows.append(checks.handshake_failed(host, port, shake.error or "no certificate"))
        return rows + _skipped(["server"], rows[-1]), ServerFacts(problem=rows[-1])
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    chain = checks.chains_to_ca(shake.cert, pki.issued_by(shake.cert, ca))
    now = dt.datetime.now(dt.UTC)
    rows += [checks.tls_version(shake.version), checks.alpn_h2(shake.alpn), chain,
             checks.covers_name(shake.cert, host),
             checks.certificate_validity("served", "the certificate the server presented",
                                         shake.cert.not_valid_before_utc, shake.cert.not_valid_after_utc, now)]
    if any(r.status == Status.FAIL for r in rows[-5:]):
        first = next(r for r in rows[-5:] if r.status == Status.FAIL)
        return rows + _skipped(["server"], first), ServerFacts(problem=first)
    server = ask_server(info, timeout_s)
    if server.info is None:
        assert server.problem is not None
        return [*rows, server.problem], server
    answered = f"the server of project '{server.info.project}' answered (flctl {server.info.flctl_version})"
    return [*rows, checks.ok("server", answered)], server


def _transport(info: KitInfo) -> str:
    """The transport a site's kit (and its local/resources.yml) chooses; grpc when it cannot be read (the node says
    why when it starts)."""
    from flctl.node.config.kit import load_kit
    from flctl.node.errors import NodeError
    from flctl.node.transport.channel import kit_transport
    from flctl.provisioner.errors import KitError

    try:
        return kit_transport(load_kit(info.path, verify=False))
    except (KitError, NodeError):
        return "grpc"


def _wss_rows(info: KitInfo, timeout_s: float) -> tuple[list[Row], ServerFacts]:
    """A site on wss: a WebSocket to the server's tunnel (through its HTTPS_PROXY), then the server's answer over it."""
    from flctl.node.config.kit import load_kit
    from flctl.node.transport.wss_probe import probe

    tried = probe(load_kit(info.path, verify=False), timeout_s)
    row = checks.wss_tunnel(tried.route, tried.problem)
    if row.status == Status.FAIL:
        return [row, *_skipped(["server"], row)], ServerFacts(problem=row)
    server = ask_server(info, timeout_s, "wss")
    if server.info is None:
        assert server.problem is not None
        return [row, server.problem], server
    answered = f"the server of project '{server.info.project}' answered over wss (flctl {server.info.flctl_version})"
    return [row, checks.ok("server", answered)], server


def ask_server(info: KitInfo, timeout_s: float, transport: str = "grpc") -> ServerFacts:
    """The server's ServerInfo answer, or the row saying why it could not be had."""
    from flctl.node.admin.server_info import NotReported, ask_server_info
    from flctl.node.config.kit import load_kit
    from flctl.node.errors import ConnectionFailed, NodeError

    try:
        return ServerFacts(ask_server_info(load_kit(info.path, verify=False), timeout_s, transport))
    except NotReported as exc:
        return ServerFacts(problem=checks.warn("server", f"{exc}; upgrade it (`flctl deploy upgrade`)"))
    except ConnectionFailed as exc:  # refused this identity (a revoked certificate): cannot authenticate, exit 3
        return ServerFacts(problem=checks.fail("server", f"the server did not answer this kit's call: {exc}",
                                               connection=True))
    except NodeError as exc:
        return ServerFacts(problem=checks.fail("server", f"the server did not answer this kit's call: {exc}"))


def _clock_here(server: ServerFacts) -> Row:
    if server.info is None:
        return _unknown("clock", server)
    return checks.clock_skew(server.info.skew_s, server.info.uncertainty_s)


def _unknown(name: str, server: ServerFacts) -> Row:
    """A check that needs the server's answer, which did not come."""
    assert server.problem is not None
    if server.problem.status == Status.WARN:
        return checks.warn(name, "not checked: the server does not report it")
    return checks.not_checked(name, server.problem)


def _skipped(names: list[str], because: Row) -> list[Row]:
    return [checks.not_checked(name, because) for name in names]


def _flctl_here() -> str:
    from flctl.node.server.server_info import flctl_version

    return flctl_version()


# ---- an inventory, over SSH ------------------------------------------------------------------------------------------
def check_inventory(path: Path, accept_new_host_keys: bool = False, parallel: int = 4,
                    timeout_s: float = TIMEOUT_S) -> list[Report]:
    """Every host of the inventory file: its kit checked from here, its side over SSH. One host that cannot be
    reached fails alone. A file that is not an inventory raises InputError (exit 2)."""
    from flctl.cloud.inventory import load_inventory

    return check_hosts(load_inventory(path), accept_new_host_keys, parallel, timeout_s)


def check_hosts(inventory: Inventory, accept_new_host_keys: bool = False, parallel: int = 4,
                timeout_s: float = TIMEOUT_S) -> list[Report]:
    """`check_inventory` for an inventory already loaded (`flctl play` builds one from its playbook): the hosts in
    the inventory's order, `parallel` at a time, each reached through its deploy target as `flctl deploy` does."""
    from flctl.cloud import targets
    from flctl.cloud.targets.base import Deployment
    from flctl.cloud.targets.rollout_target import RolloutTarget

    deployment = Deployment(inventory, accept_new_host_keys=accept_new_host_keys, parallel=parallel)
    jobs: list[Callable[[], Report]] = []
    for provider in dict.fromkeys(h.provider for h in inventory.hosts):
        target = targets.get(provider)
        hosts = [h for h in inventory.hosts if h.provider == provider]
        if not isinstance(target, RolloutTarget):  # slurm: batch jobs, no host of its own to probe (see
            continue                               # `flctl deploy status`, squeue over SSH)
        rollout = target.rollout(deployment, hosts)
        for host in rollout.absent:
            jobs.append(_absent(host, inventory.source))
        for host in rollout.inventory.hosts:
            jobs.append(_host_job(host, inventory.kit(host.participant), rollout.connector_factory, timeout_s))
    order = {h.participant: i for i, h in enumerate(inventory.hosts)}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        reports = list(pool.map(lambda job: job(), jobs))
    return sorted(reports, key=lambda r: order.get(r.participant, len(order)))


def is_playbook(path: Path) -> bool:
    """Whether `path` reads as a `flctl play` playbook (a mapping with `project` and `inventory`) rather than an
    inventory (a mapping with `hosts`); anything unreadable is left to the inventory's loader to name."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "project" in data and "inventory" in data and "hosts" not in data


def check_playbook(path: Path, accept_new_host_keys: bool = False, parallel: int = 4,
                   timeout_s: float = TIMEOUT_S) -> list[Report]:
    """Every host of a playbook, over the kits `flctl play` provisioned and the inventory it rolls out
    (STATE/inventory.yml). Before play has provisioned them there are no kits to check: InputError saying so."""
    from flctl.cloud.playbook import load_playbook
    from flctl.provisioner.errors import InputError, Problem

    playbook = load_playbook(path)
    rolled = playbook.state_dir / "inventory.yml"
    if not rolled.is_file():
        raise InputError([Problem(str(path), None, "", f"its kits are not provisioned yet (no {rolled}); `flctl "
                                                       f"play {path}` provisions them and runs these checks on every "
                                                       "host before it deploys")])
    return check_inventory(rolled, accept_new_host_keys, parallel, timeout_s)


def _absent(host: HostSpec, inventory: Path) -> Callable[[], Report]:
    def job() -> Report:
        return Report(host.participant, host.provider, [checks.fail(
            "ssh", f"its {host.provider} machine does not exist yet; create it with `flctl deploy {host.provider} "
                   f"{inventory}`", connection=True)])
    return job


def _host_job(host: HostSpec, kit: Path, connector_factory: Callable[[HostSpec], Connector],
              timeout_s: float) -> Callable[[], Report]:
    def job() -> Report:
        return check_host(host, kit, connector_factory, timeout_s)
    return job


def check_host(host: HostSpec, kit: Path, connector_factory: Callable[[HostSpec], Connector],
               timeout_s: float) -> Report:
    """One inventory host: its kit from here, then its own side over SSH (any failure is this host's row)."""
    from flctl.cloud.deploy_errors import (
        AuthenticationFailed,
        DeployError,
        HostKeyChanged,
        HostKeyUnknown,
        HostUnreachable,
    )
    from flctl.provisioner.errors import ProvisionError

    where = host.where
    try:
        info = read_kit(kit)
    except ProvisionError as exc:
        return Report(host.participant, where, [checks.fail("kit", f"{exc}; provision again or fix `kits`")])
    rows = kit_rows(info)
    network, server = network_rows(info, timeout_s)
    rows += network
    try:
        conn = connector_factory(host)
        conn.connect()
    except DeployError as exc:  # as `flctl deploy` counts them: these are failures to connect (exit 3)
        connection = isinstance(exc, HostUnreachable | AuthenticationFailed | HostKeyUnknown | HostKeyChanged)
        rows.append(checks.fail("ssh", str(exc), connection=connection))
        return Report(host.participant, where, rows)
    try:
        rows.append(checks.ok("ssh", f"connected to {host.user}@{where}:{host.port}"))
        rows += _host_side(conn, host, info, server)
    except (probes.ProbeFailed, DeployError, OSError) as exc:
        rows.append(checks.fail("host", f"{host.participant} on {where}: {exc}"))
    finally:
        conn.close()
    return Report(host.participant, where, rows)


def _host_side(conn: Connector, host: HostSpec, info: KitInfo, server: ServerFacts) -> list[Row]:
    where = host.where
    listens = info.kind == "server"
    sent = time.time()
    facts = probes.probe_host(conn, host.python, host.install_dir, info.server_host, info.server_port, listens)
    received = time.time()
    rows = [_host_dns(info.server_host, facts, where), _host_port(info, facts, where)]
    if facts.tls is not None:
        rows.append(_host_tls(info, facts.tls, where))
    if server.info is None:
        rows.append(_unknown("clock", server))
    else:  # both against this machine: the host's skew from the probe's round trip, the server's from its answer
        host_skew = facts.time - (sent + received) / 2
        rows.append(checks.clock_skew(server.info.skew_s - host_skew,
                                      server.info.uncertainty_s + (received - sent) / 2))
    server_python = server.info.python_version if server.info else None
    server_flctl = server.info.flctl_version if server.info else None
    rows.append(checks.python_version(facts.python, where, server_python))
    rows.append(checks.flctl_version(facts.flctl, where, server_flctl, _flctl_here()))
    rows.append(checks.free_disk(facts.free_mb, host.install_dir, where, host.min_free_mb))
    if listens:
        rows.append(checks.listen_port(info.server_port, where, facts.taken, server.info is not None))
    return rows


def _host_dns(server_host: str, facts: probes.HostFacts, where: str) -> Row:
    row = checks.resolves(server_host, facts.addresses, facts.dns_error)
    return checks.Row("dns (host)", row.status, f"on {where}: {row.sentence}", row.connection)


def _host_port(info: KitInfo, facts: probes.HostFacts, where: str) -> Row:
    row = checks.port_open(info.server_host, info.server_port, facts.connect_error)
    return checks.Row("port (host)", row.status, f"from {where}: {row.sentence}", row.connection)


def _host_tls(info: KitInfo, shake: probes.Handshake, where: str) -> Row:
    """The server's TLS as the host sees it (a load balancer may sit on its path only): version, h2, the
    certificate's CA and name, in one row."""
    host, port = info.server_host, info.server_port
    if shake.error is not None or shake.cert is None:
        failed = checks.handshake_failed(host, port, shake.error or "no certificate")
        return checks.Row("tls (host)", Status.FAIL, f"from {where}: {failed.sentence}")
    ca = x509.load_pem_x509_certificate(KitPaths.find(info.path).ca_cert.read_bytes())
    rows = [checks.tls_version(shake.version), checks.alpn_h2(shake.alpn),
            checks.chains_to_ca(shake.cert, pki.issued_by(shake.cert, ca)), checks.covers_name(shake.cert, host)]
    return checks.seen_from("tls (host)", where, rows, f"TLS 1.3 and h2 agreed; the server's certificate, of the "
                                                       f"kit's CA, covers {host}")
