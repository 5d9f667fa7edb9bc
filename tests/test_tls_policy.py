"""TLS policy and certificate validity on real nodes: the lowest TLS version, expired certificates, clock skew."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from .conftest import run_flctl
from .federation import Federation, free_port, make_federation, project_text


def s_client(fed: Federation, version: str) -> subprocess.CompletedProcess[str]:
    """`openssl s_client -tls1_N` to the server with the admin's certificate; what openssl said."""
    startup = fed.admin_kit / "startup"
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{fed.port}", f"-tls1_{version[-1]}",
                           "-CAfile", str(startup / "ca.crt"), "-cert", str(startup / "admin.crt"),
                           "-key", str(startup / "admin.key"), "-brief"],
                          input="", capture_output=True, text=True, timeout=30, check=False)


def wait_listening(fed: Federation, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    log = fed.kit("localhost") / "workspace" / "node.log"
    while time.monotonic() < deadline:
        if log.exists() and "TLS 1.2 handshake" in log.read_text():  # the server tried TLS 1.2 on itself: it listens
            return
        proc = fed.processes["localhost"]
        assert proc.poll() is None, fed.logs()
        time.sleep(0.2)
    raise AssertionError("the server did not start: " + fed.logs())


@pytest.mark.parametrize("setting", ["", "tls_min_version: \"1.2\"\n"])
def test_the_server_accepts_tls_1_3_only_unless_its_resources_allow_1_2(tmp_path: Path, setting: str) -> None:
    """openssl s_client -tls1_2 is refused by default and accepted with tls_min_version "1.2"; -tls1_3 always works."""
    fed = make_federation(tmp_path, sites=1, name="tlsmin")
    resources = fed.kit("localhost") / "local" / "resources.yml"
    resources.write_text(resources.read_text() + setting)
    try:
        fed.start("localhost")
        wait_listening(fed)
        tls13, tls12 = s_client(fed, "1.3"), s_client(fed, "1.2")
    finally:
        fed.stop_all()
    # gRPC closes a connection that sends no HTTP/2 after the handshake: openssl then exits 1 ("unexpected eof").
    assert "CONNECTION ESTABLISHED\nProtocol version: TLSv1.3" in tls13.stderr, tls13.stderr
    if setting:
        assert "CONNECTION ESTABLISHED\nProtocol version: TLSv1.2" in tls12.stderr, tls12.stderr
    else:
        assert "CONNECTION ESTABLISHED" not in tls12.stderr and "Protocol version" not in tls12.stderr, tls12.stderr
        assert tls12.returncode != 0


def test_a_bad_tls_min_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    """tls_min_version other than "1.3" or "1.2" (1.1, a number) stops the node with exit 2, the file named."""
    from flctl.node.config.resources import load_resources
    from flctl.provisioner.errors import KitError

    path = tmp_path / "resources.yml"
    assert load_resources(path).tls_min_version == "1.3"
    for value in ('"1.1"', "1.2"):
        path.write_text(f"tls_min_version: {value}\n")
        with pytest.raises(KitError, match=rf'{path}: tls_min_version must be "1.3" or "1.2" \(default "1.3"\), not'):
            load_resources(path)


# ---------------------------------------------------------------- certificates out of their validity

def provisioned_at(root: Path, days: float) -> Path:
    """A one-site project provisioned as if the provisioner's clock said now + `days`, certificates valid one day;
    its prod folder."""
    text = project_text("skew", free_port(), 1) + "certs: {valid_days: 1}\n"
    project = project_from_document(parse_yaml(text, "project.yml")).project
    when = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return provision(project, root / "ws", now=when).prod_dir


def node_start(kit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "flctl"), "node", "start", str(kit)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("node", "cert"), [("site-1", "site.crt"), ("localhost", "server.crt")])
def test_a_node_with_an_expired_certificate_does_not_start(tmp_path: Path, node: str, cert: str) -> None:
    """`flctl node start` of a site or server whose certificate expired: exit 2 and a sentence, no traceback."""
    prod = provisioned_at(tmp_path, -3)
    out = node_start(prod / node)
    assert out.returncode == 2, out.stderr
    assert f"startup/{cert} expired on" in out.stderr and "renew it" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("node", "cert"), [("site-1", "site.crt"), ("localhost", "server.crt")])
def test_a_certificate_from_the_future_says_check_the_clocks(tmp_path: Path, node: str, cert: str) -> None:
    """A certificate whose not_before is ahead of this machine's clock (a clock running behind the provisioner's):
    `flctl node start` exits 2 saying it is not yet valid and to check the clocks."""
    prod = provisioned_at(tmp_path, 2)
    out = node_start(prod / node)
    assert out.returncode == 2, out.stderr
    assert f"startup/{cert} is not yet valid: valid from" in out.stderr and "check the clocks" in out.stderr


@pytest.fixture
def server_with_cert(tmp_path: Path) -> Iterator[tuple[Federation, dict[str, grpc.Server]]]:
    fed = make_federation(tmp_path, sites=1, name="certs")
    servers: dict[str, grpc.Server] = {}
    yield fed, servers
    for server in servers.values():
        server.stop(0)


def serve_with_cert_at(fed: Federation, servers: dict[str, grpc.Server], days: float) -> None:
    """Serve TLS on the federation's port with the server's own key and a certificate issued by the project CA as
    if at now + `days` (one day's validity): the server this machine sees when their clocks disagree."""
    from flctl.node.config.kit import NodeKit, load_kit
    from flctl.node.security.tls import server_credentials
    from flctl.provisioner.pki import Issuer, cert_pem
    from flctl.provisioner.state import load_state

    project = project_from_document(parse_yaml((fed.root / "project.yml").read_text(), "project.yml")).project
    state = load_state(fed.root / "ws" / project.name, None)
    assert state is not None
    server = next(p for p in project.participants() if p.kind == "server")
    kit = load_kit(fed.kit("localhost"))
    public_key = x509.load_pem_x509_certificate(kit.cert_pem).public_key()
    cert = Issuer(state.ca_cert, state.ca_key).issue(server, public_key, 1,  # type: ignore[arg-type]
                                                     dt.datetime.now(dt.UTC) + dt.timedelta(days=days))
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    grpc_server.add_secure_port(f"127.0.0.1:{fed.port}",
                                server_credentials(NodeKit(kit.info, kit.ca_pem, cert_pem(cert), kit.key_pem)))
    grpc_server.start()
    servers["server"] = grpc_server


def test_an_admin_against_an_expired_server_certificate_gets_exit_3(server_with_cert) -> None:
    """A server whose certificate expired: the admin's command exits 3 saying so, with the date."""
    fed, servers = server_with_cert
    serve_with_cert_at(fed, servers, -3)
    out = run_flctl("job", "ls", "--kit", fed.admin_kit)
    assert out.code == 3, out.stderr
    assert "the server's certificate expired on" in out.stderr and "renewed kit" in out.stderr


def test_an_admin_against_a_server_certificate_not_yet_valid_is_told_to_check_the_clocks(server_with_cert) -> None:
    """A server certificate valid only from the future (this machine's clock behind): exit 3, "check the clocks"."""
    fed, servers = server_with_cert
    serve_with_cert_at(fed, servers, 2)
    out = run_flctl("job", "ls", "--kit", fed.admin_kit)
    assert out.code == 3, out.stderr
    assert "the server's certificate is not yet valid: valid from" in out.stderr and "check the clocks" in out.stderr
