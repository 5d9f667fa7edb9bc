"""`flctl deploy k8s --apply` and `flctl deploy destroy DIR` through the real `kubernetes` client, against a
small HTTPS double of the Kubernetes API on 127.0.0.1 (create, read, patch, delete of namespaced objects; 409 and
404 as a cluster answers). No cluster is used: what is asserted is the client's calls and the recorded state."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.federation import free_port
from tests.test_deploy_k8s import flctl, make_workspace

pytest.importorskip("kubernetes", reason="needs the k8s extra: bash scripts/setup.sh --all")

PLURALS = {"secrets", "services", "persistentvolumeclaims", "deployments", "networkpolicies"}


class ApiDouble(BaseHTTPRequestHandler):
    """Objects by path; a collection's POST creates (409 when the name exists), an item's GET, PATCH, DELETE."""

    store: ClassVar[dict[str, dict[str, Any]]] = {}
    calls: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, *args: Any) -> None:
        return

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                          "code": code})

    def _body(self) -> dict[str, Any]:
        return dict(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        path = self._path()
        self.calls.append(("GET", path))
        if path in self.store:
            self._send(200, self.store[path])
        else:
            self._status(404, "NotFound")

    def do_POST(self) -> None:
        path, body = self._path(), self._body()
        self.calls.append(("POST", path))
        item = f"{path}/{body['metadata']['name']}"
        if item in self.store:
            self._status(409, "AlreadyExists")
            return
        self.store[item] = body
        self._send(201, body)

    def do_PATCH(self) -> None:
        path, body = self._path(), self._body()
        self.calls.append(("PATCH", path))
        if path not in self.store:
            self._status(404, "NotFound")
            return
        self.store[path] = {**self.store[path], **body}
        self._send(200, self.store[path])

    def do_DELETE(self) -> None:
        path = self._path()
        self.calls.append(("DELETE", path))
        if self.store.pop(path, None) is None:
            self._status(404, "NotFound")
        else:
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})


def _certificate(folder: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api-double")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "api.crt").write_bytes(pem)
    (folder / "api.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "api.crt", folder / "api.key", pem


def kubeconfig(path: Path, port: int, ca_pem: bytes) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "double",
        "clusters": [{"name": "double", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                    "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": "me", "user": {"token": "test-token"}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "me"}}]}))
    return path


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Path, type[ApiDouble]]]:
    crt, key, pem = _certificate(tmp_path)

    class Handler(ApiDouble):
        store: ClassVar[dict[str, dict[str, Any]]] = {}
        calls: ClassVar[list[tuple[str, str]]] = []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kubeconfig(tmp_path / "kubeconfig", server.server_address[1], pem), Handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_apply_creates_then_patches_and_destroy_removes_exactly_what_it_made(
        api: tuple[Path, type[ApiDouble]], tmp_path: Path) -> None:
    """First apply: namespace and 10 objects created; again: 10 patched, no new namespace; destroy: exactly the
    recorded ones (an object flctl did not make stays); a second destroy has nothing to do."""
    config, double = api
    ws, out = make_workspace(tmp_path / "p"), tmp_path / "bundle"
    first = flctl("deploy", "k8s", ws, "-o", out, "--namespace", "fl", "--apply", "--kubeconfig", config, "--json")
    assert first.returncode == 0, first.stderr
    applied = json.loads(first.stdout)["applied"]
    assert applied[0] == {"kind": "Namespace", "name": "fl", "status": "created"}
    assert len(applied) == 11 and {a["status"] for a in applied[1:]} == {"created"}
    assert "/apis/apps/v1/namespaces/fl/deployments/site-1" in double.store
    secret = double.store["/api/v1/namespaces/fl/secrets/site-1-kit"]
    assert base64.b64decode(secret["data"]["startup.node.yml"]).startswith(b"# Written by `flctl provision`")

    again = flctl("deploy", "k8s", ws, "-o", out, "--namespace", "fl", "--apply", "--kubeconfig", config,
                  "--force", "--json")
    assert again.returncode == 0, again.stderr
    statuses = [a["status"] for a in json.loads(again.stdout)["applied"]]
    assert statuses == ["updated"] * 10
    state = json.loads((tmp_path / "bundle.deploy" / "state.json").read_text())
    assert len(state["records"]) == 11

    double.store["/api/v1/namespaces/fl/secrets/not-ours"] = {"metadata": {"name": "not-ours"}}
    gone = flctl("deploy", "destroy", out, "--yes", "--kubeconfig", config, "--json")
    assert gone.returncode == 0, gone.stderr
    deleted = json.loads(gone.stdout)
    assert [d["kind"] for d in deleted][:3] == ["Deployment"] * 3 and deleted[-1]["kind"] == "Namespace"
    assert {d["status"] for d in deleted} == {"deleted"}
    assert list(double.store) == ["/api/v1/namespaces/fl/secrets/not-ours"]
    assert json.loads((tmp_path / "bundle.deploy" / "state.json").read_text())["records"] == []
    second = flctl("deploy", "destroy", out, "--yes", "--kubeconfig", config)
    assert second.returncode == 0 and "nothing to destroy" in second.stdout + second.stderr


def test_an_unreachable_cluster_is_exit_3_and_a_bad_kubeconfig_exit_2(tmp_path: Path) -> None:
    """A kubeconfig whose server does not answer: exit 3; a kubeconfig that is not one: exit 2."""
    ws = make_workspace(tmp_path / "p")
    config = kubeconfig(tmp_path / "kc", free_port(), b"")
    done = flctl("deploy", "k8s", ws, "-o", tmp_path / "o", "--apply", "--kubeconfig", config)
    assert done.returncode == 3 and "cannot reach the cluster" in done.stderr
    (tmp_path / "bad").write_text("not: [a kubeconfig")
    done = flctl("deploy", "k8s", ws, "-o", tmp_path / "o2", "--apply", "--kubeconfig", tmp_path / "bad")
    assert done.returncode == 2 and "[--kubeconfig]" in done.stderr
