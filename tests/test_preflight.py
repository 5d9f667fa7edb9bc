"""`flctl preflight` against real things on 127.0.0.1: a running server, a closed port, a name under the reserved
`.invalid` TLD, TLS servers presenting a certificate of another CA, a wrong SAN or an expired one (made with past
dates), one speaking TLS 1.2 without h2 and one speaking plain HTTP, a port already bound, and an inventory whose
hosts are real sshd processes (one of them unreachable).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flctl.provisioner import pki
from flctl.provisioner.revocation import revoke
from tests.federation import ADMIN, Federation, free_port, make_federation, project_text, running
from tests.sshd import make_key, start_hosts

FLCTL = str(Path(sys.executable).parent / "flctl")
HOST_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
NOW = dt.datetime.now(dt.UTC)


def preflight(*args: str | Path, timeout: float = 120) -> tuple[int, list[dict[str, Any]], str]:
    """Run `flctl preflight ARGS --json`: exit code, rows, stderr."""
    out = subprocess.run([FLCTL, "preflight", *map(str, args), "--json", "--timeout", "2"], capture_output=True,
                         text=True, timeout=timeout, check=False)
    rows = json.loads(out.stdout) if out.stdout.strip() else []
    return out.returncode, rows, out.stderr


def row(rows: list[dict[str, Any]], check: str, participant: str | None = None) -> dict[str, Any]:
    found = [r for r in rows if r["check"] == check and participant in (None, r["participant"])]
    assert len(found) == 1, (check, rows)
    return found[0]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    admins = [ADMIN, ("spare@hub.org", "hub", "member")]  # the spare is revoked once; the CRL outlives the run
    return make_federation(tmp_path_factory.mktemp("preflight"), sites=1, admins=admins)


def _ca_of(fed: Federation) -> tuple[x509.Certificate, Any]:
    state = fed.root / "ws" / "fedtest" / "state"
    return (x509.load_pem_x509_certificate((state / "ca.crt").read_bytes()),
            pki.load_key((state / "ca.key").read_bytes()))


def _other_ca() -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    return pki.build_ca("another", key, 30, NOW), key


def _leaf(ca: tuple[x509.Certificate, Any], names: list[str], not_before: dt.datetime,
          not_after: dt.datetime) -> tuple[bytes, bytes]:
    """A server certificate (PEM) and its key (PEM), issued by `ca` for `names`, valid in the window given."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impostor")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return pki.cert_pem(cert), pki.key_pem(key)


@contextlib.contextmanager
def tls_server(port: int, leaf: tuple[bytes, bytes] | None, folder: Path, alpn: list[str] | None = None,
               max_version: ssl.TLSVersion | None = None) -> Iterator[None]:
    """A server on 127.0.0.1:`port` that completes TLS handshakes with `leaf` and hangs up (None: answers plain
    HTTP instead), as a load balancer or a wrong service on the server's port would."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if leaf is not None:
        (folder / "leaf.crt").write_bytes(leaf[0])
        (folder / "leaf.key").write_bytes(leaf[1])
        context.load_cert_chain(folder / "leaf.crt", folder / "leaf.key")
        if alpn:
            context.set_alpn_protocols(alpn)
        if max_version is not None:
            context.maximum_version = max_version
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), conn:
                conn.settimeout(2)
                if leaf is None:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                else:
                    with context.wrap_socket(conn, server_side=True):
                        pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_running_federation_passes_every_check(fed: Federation):
    """With the server up, a site's, the server's and an admin's kit pass: clock within 10 s, the same versions;
    once the server's CRL revokes an admin, that admin's kit's ServerInfo call is refused (exit 3)."""
    with running(fed, sites=[]):
        code, rows, err = preflight(fed.kit("site-1"))
        server_code, server_rows, _ = preflight(fed.kit("localhost"))
        admin_code, _, _ = preflight(fed.kit(fed.admin))
        spare_code, _, _ = preflight(fed.kit("spare@hub.org"))
        local_crl = fed.kit("localhost") / "local" / "crl.pem"
        local_crl.write_bytes(revoke(fed.root / "ws" / "fedtest", "spare@hub.org").crl_path.read_bytes())
        revoked_code, revoked_rows, _ = preflight(fed.kit("spare@hub.org"))

    assert code == 0, err
    assert [r["status"] for r in rows] == ["ok"] * len(rows)
    assert [r["check"] for r in rows] == ["signature", "cert site-1", "cert CA", "dns", "port", "tls", "alpn", "chain",
                                          "san", "cert served", "server", "clock", "python", "flctl", "disk"]
    assert "under the 10 s bound" in row(rows, "clock")["sentence"]
    assert row(rows, "dns")["sentence"] == "localhost resolves to 127.0.0.1"
    assert (server_code, admin_code, spare_code) == (0, 0, 0)
    assert "in use on this machine, by a server of this project" in row(server_rows, "listen")["sentence"]
    assert revoked_code == 3  # cannot authenticate
    assert "revoked" in row(revoked_rows, "server")["sentence"] and row(revoked_rows, "clock")["status"] == "fail"


def test_a_closed_port_fails_as_a_connection_with_exit_3(fed: Federation):
    """No server on the port: the port fails, what needs it says so, and only connections failed: exit 3."""
    code, rows, err = preflight(fed.kit("site-1"))

    assert code == 3, err
    assert row(rows, "port")["status"] == "fail" and "Connection refused" in row(rows, "port")["sentence"]
    assert row(rows, "tls")["sentence"] == "not checked: the port check failed"
    assert row(rows, "clock")["status"] == "fail"
    assert row(rows, "signature")["status"] == "ok"
    assert "Traceback" not in err


def test_a_name_that_does_not_resolve(tmp_path: Path):
    """A server named under the reserved .invalid TLD: dns fails naming it, exit 3."""
    from flctl.provisioner.build import provision
    from flctl.provisioner.project_loader import project_from_document
    from flctl.provisioner.yaml_source import parse_yaml

    text = project_text("nowhere", free_port(), 1).replace("name: localhost", "name: fl.invalid")
    prod = provision(project_from_document(parse_yaml(text, "project.yml")).project, tmp_path / "ws").prod_dir

    code, rows, _ = preflight(prod / "site-1")

    assert code == 3
    assert row(rows, "dns")["status"] == "fail"
    assert row(rows, "dns")["sentence"].startswith("fl.invalid does not resolve (")
    assert row(rows, "port")["sentence"] == "not checked: the dns check failed"


def test_a_certificate_from_another_ca(fed: Federation, tmp_path: Path):
    """A TLS server on the port with another CA's certificate: chain fails naming the issuer and a load balancer."""
    with tls_server(fed.port, _leaf(_other_ca(), ["localhost"], NOW, NOW + dt.timedelta(days=5)), tmp_path, ["h2"]):
        code, rows, _ = preflight(fed.kit("site-1"))

    assert code == 1
    chain = row(rows, "chain")
    assert chain["status"] == "fail" and "CN=another CA" in chain["sentence"] and "load balancer" in chain["sentence"]
    assert row(rows, "san")["status"] == "ok"
    assert row(rows, "server")["sentence"] == "not checked: the chain check failed"


def test_a_certificate_that_does_not_cover_the_name(fed: Federation, tmp_path: Path):
    """The kit's CA issued it, but for another name: san fails naming what it covers."""
    with tls_server(fed.port, _leaf(_ca_of(fed), ["other.example"], NOW, NOW + dt.timedelta(days=5)), tmp_path,
                    ["h2"]):
        code, rows, _ = preflight(fed.kit("site-1"))

    assert code == 1
    assert row(rows, "chain")["status"] == "ok"
    assert row(rows, "san")["status"] == "fail"
    assert "does not cover localhost (it names other.example)" in row(rows, "san")["sentence"]


def test_an_expired_server_certificate(fed: Federation, tmp_path: Path):
    """A certificate of the kit's CA made with past dates: the served certificate fails with its expiry date."""
    ended = NOW - dt.timedelta(days=2)
    leaf = _leaf(_ca_of(fed), ["localhost"], NOW - dt.timedelta(days=20), ended)
    with tls_server(fed.port, leaf, tmp_path, ["h2"]):
        code, rows, _ = preflight(fed.kit("site-1"))

    assert code == 1
    served = row(rows, "cert served")
    assert served["status"] == "fail"
    assert f"expired on {ended:%Y-%m-%d %H:%M} UTC" in served["sentence"]


def test_tls_12_without_h2_names_a_load_balancer(fed: Federation, tmp_path: Path):
    """TLS 1.2 and only HTTP/1.1 (no h2 agreed), as a terminating load balancer answers: tls warns, alpn fails, both
    name it."""
    leaf = _leaf(_ca_of(fed), ["localhost"], NOW, NOW + dt.timedelta(days=5))
    with tls_server(fed.port, leaf, tmp_path, ["http/1.1"], ssl.TLSVersion.TLSv1_2):
        code, rows, _ = preflight(fed.kit("site-1"))

    assert code == 1
    assert row(rows, "tls")["status"] == "warn" and "TLSv1.2" in row(rows, "tls")["sentence"]
    alpn = row(rows, "alpn")
    assert alpn["status"] == "fail" and "it chose none" in alpn["sentence"] and "load balancer" in alpn["sentence"]


def test_plain_http_on_the_port(fed: Federation, tmp_path: Path):
    """Something answering plain HTTP: no handshake, and the sentence names a TLS-terminating load balancer."""
    with tls_server(fed.port, None, tmp_path):
        code, rows, _ = preflight(fed.kit("site-1"))

    assert code == 1
    tls = row(rows, "tls")
    assert tls["status"] == "fail" and tls["sentence"].startswith("no TLS handshake with localhost:")
    assert "load balancer" in tls["sentence"]


def test_the_servers_port_already_bound(fed: Federation):
    """Another process listens on the server's port: the server's kit fails its listen check."""
    with socket.create_server(("127.0.0.1", fed.port)):
        code, rows, _ = preflight(fed.kit("localhost"))

    assert code == 1
    listen = row(rows, "listen")
    assert listen["status"] == "fail" and f"port {fed.port} is already taken on this machine" in listen["sentence"]


def test_what_is_not_a_kit_or_an_inventory_exits_2(tmp_path: Path):
    """A folder that is not a kit, a YAML file that is not an inventory, a kit still zipped, a path that is not
    there: exit 2, each named."""
    (tmp_path / "notakit").mkdir()
    (tmp_path / "inventory.yml").write_text("hello: world\n")
    with zipfile.ZipFile(tmp_path / "site-1.zip", "w") as archive:
        archive.writestr("site-1/startup/node.yml", "")
    for target in (tmp_path / "notakit", tmp_path / "inventory.yml", tmp_path / "site-1.zip", tmp_path / "missing"):
        out = subprocess.run([FLCTL, "preflight", str(target)], capture_output=True, text=True, timeout=60,
                             check=False)
        assert out.returncode == 2, out.stderr
        assert str(target) in out.stderr and "Traceback" not in out.stderr


def test_an_inventory_over_ssh_with_one_host_unreachable(fed: Federation, tmp_path: Path):
    """The server's host answers over SSH (its Python, disk, port, TLS and clock checked there); the site's host
    cannot be reached and fails alone with one sentence; only connections failed: exit 3. With a TLS server of
    another CA on the port, the host's own handshake fails naming a load balancer."""
    key = make_key(tmp_path / "id_ed25519")
    (tmp_path / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    [host] = start_hosts(tmp_path, 1, tmp_path / "authorized_keys")
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line())
    closed = free_port()
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        f"api_version: 1\nkits: {fed.prod}\nknown_hosts: {known}\nhosts:\n"
        f"  - {{participant: localhost, address: 127.0.0.1, port: {host.port}, user: root, key_file: {key}, "
        f"python: {HOST_PYTHON}, install_dir: {host.install_dir}, min_free_mb: 10}}\n"
        f"  - {{participant: site-1, address: 127.0.0.1, port: {closed}, user: root, key_file: {key}, "
        f"python: {HOST_PYTHON}, install_dir: {tmp_path / 'site'}}}\n")
    impostor = _leaf(_other_ca(), ["localhost"], NOW, NOW + dt.timedelta(days=5))
    try:
        with running(fed, sites=[]):
            code, rows, err = preflight(inventory)
        with tls_server(fed.port, impostor, tmp_path, ["h2"]):
            _, behind_lb, _ = preflight(inventory)
    finally:
        host.stop()

    assert code == 3, err
    server = {r["check"]: r for r in rows if r["participant"] == "localhost"}
    assert {"ssh", "dns (host)", "port (host)", "tls (host)", "clock", "python", "flctl", "disk",
            "listen"} <= set(server)
    assert "TLS 1.3 and h2 agreed; the server's certificate, of the kit's CA, covers localhost" in \
        server["tls (host)"]["sentence"]
    assert [c for c, r in server.items() if r["status"] != "ok"] == ["flctl"]  # nothing deployed there yet
    assert server["flctl"]["sentence"].startswith("flctl is not installed on 127.0.0.1 yet")
    assert server["disk"]["sentence"].endswith(f"in {host.install_dir} on 127.0.0.1")
    site = [r for r in rows if r["participant"] == "site-1" and r["status"] == "fail"]
    assert [r["check"] for r in site] == ["ssh"] and site[0]["connection"] is True
    assert row(rows, "port", "site-1")["status"] == "ok"  # its kit was still checked from here
    seen = row(behind_lb, "tls (host)", "localhost")
    assert seen["status"] == "fail" and seen["sentence"].startswith("from 127.0.0.1: the server's certificate")
    assert "load balancer" in seen["sentence"]


def test_a_kit_certificate_expired(tmp_path: Path):
    """A project provisioned 400 days ago (certificates of 365 days): the kit's own certificate fails with its
    expiry date, the CA's (ten years) passes, and that is not a connection failure: exit 1."""
    from flctl.provisioner.build import provision
    from flctl.provisioner.project_loader import project_from_document
    from flctl.provisioner.yaml_source import parse_yaml

    then = NOW - dt.timedelta(days=400)
    project = project_from_document(parse_yaml(project_text("old", free_port(), 1), "project.yml")).project
    prod = provision(project, tmp_path / "ws", now=then).prod_dir

    code, rows, _ = preflight(prod / "site-1")

    assert code == 1
    own = row(rows, "cert site-1")
    assert own["status"] == "fail" and own["sentence"].startswith("site-1's certificate expired on ")
    assert row(rows, "cert CA")["status"] == "ok"


def test_a_server_clock_far_ahead(fed: Federation, tmp_path: Path):
    """A gRPC server on the port with the server's kit whose ServerInfo clock runs 400 s ahead: the clock fails,
    naming the skew and the 300 s bound (the skew measured over real mTLS from the answer's time)."""
    import grpc

    from flctl.node.config.kit import load_kit
    from flctl.node.security.tls import server_credentials
    from flctl.node.wire.proto import flctl_pb2 as pb
    from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc

    class Ahead(pb_grpc.FederationServicer):
        def ServerInfo(self, request: Any, context: Any) -> Any:
            import time

            return pb.ServerInfoReply(time=time.time() + 400, flctl_version="0.1.0", python_version="3.11.7",
                                      project="fedtest")

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    pb_grpc.add_FederationServicer_to_server(Ahead(), server)
    server.add_secure_port(f"localhost:{fed.port}", server_credentials(load_kit(fed.kit("localhost"))))
    server.start()
    try:
        code, rows, _ = preflight(fed.kit("site-1"))
    finally:
        server.stop(0)

    assert code == 1
    clock = row(rows, "clock")
    assert clock["status"] == "fail"
    assert re.search(r"the server's clock is (399\.9\d\d|400\.0\d\d) s ahead of this machine's .* over the 300 s bound",
                     clock["sentence"]), clock


def test_a_playbook_before_and_after_play_provisioned_it(fed: Federation, tmp_path: Path):
    """A playbook whose kits play has not provisioned yet: exit 2 saying so; once STATE/inventory.yml (the inventory
    play rolls out) is there, its hosts are checked like an inventory's (here one host that cannot be reached)."""
    closed = free_port()
    playbook = tmp_path / "play.yml"
    playbook.write_text(f"api_version: 1\nproject: {fed.root / 'project.yml'}\njobs: []\ninventory:\n  hosts:\n"
                        f"    - {{participant: site-1, address: 127.0.0.1, port: {closed}, user: root, "
                        f"install_dir: {tmp_path / 'site'}}}\n")

    early = subprocess.run([FLCTL, "preflight", str(playbook)], capture_output=True, text=True, timeout=60,
                           check=False)
    (tmp_path / "play.play").mkdir()
    (tmp_path / "play.play" / "inventory.yml").write_text(
        f"api_version: 1\nkits: {fed.prod}\nknown_hosts: {tmp_path / 'known_hosts'}\nhosts:\n"
        f"  - {{participant: site-1, address: 127.0.0.1, port: {closed}, user: root, "
        f"install_dir: {tmp_path / 'site'}}}\n")
    code, rows, err = preflight(playbook)

    assert early.returncode == 2 and "not provisioned yet" in early.stderr and "flctl play" in early.stderr
    assert code == 3, err
    assert row(rows, "ssh", "site-1")["status"] == "fail" and row(rows, "signature", "site-1")["status"] == "ok"
