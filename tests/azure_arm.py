"""A local stand-in for Azure Resource Manager, over HTTPS with a test CA, for the Azure deployment tests.

It implements just the ARM calls flctl makes, the way ARM answers them: resource groups (HEAD, PUT,
DELETE, list resources), network and compute resources (GET, PUT and DELETE as long-running
operations polled through Azure-AsyncOperation and Location), and an App Service managed-identity
token endpoint, so `DefaultAzureCredential` itself obtains the token. Every request is recorded.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN = "local-arm-test-token"
IDENTITY_HEADER = "local-identity-secret"


@dataclass
class Call:
    method: str
    path: str
    api_version: str | None
    body: Any


@dataclass
class ArmState:
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower-case id -> resource JSON
    operations: dict[str, list[Any]] = field(default_factory=dict)  # operation id -> answers still to give
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    addresses: itertools.count[int] = field(default_factory=lambda: itertools.count(10))
    tokens_issued: int = 0
    retry_after: str = "0"
    in_progress_polls: int = 1


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local ARM test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "arm-ca.pem", folder / "arm-cert.pem", folder / "arm-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class ArmServer:
    """The stand-in, on https://127.0.0.1:<port>; `stop()` ends it."""

    def __init__(self, folder: Path, retry_after: int = 0, in_progress_polls: int = 1) -> None:
        """`retry_after`: what ARM tells pollers to wait (0: their own interval); `in_progress_polls`: how many
        polls of an operation answer InProgress before it succeeds."""
        self.ca, cert, key = make_tls(folder)
        self.state = ArmState(retry_after=str(retry_after), in_progress_polls=in_progress_polls)
        handler = type("Handler", (_Handler,), {"arm": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def identity_env(self) -> dict[str, str]:
        """Environment under which DefaultAzureCredential gets its token here (App Service managed identity)."""
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": IDENTITY_HEADER,
                "REQUESTS_CA_BUNDLE": str(self.ca)}

    def calls(self, method: str | None = None) -> list[Call]:
        with self.state.lock:
            return [c for c in self.state.calls if method is None or c.method == method]

    def resources(self) -> dict[str, dict[str, Any]]:
        with self.state.lock:
            return dict(self.state.resources)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    arm: ArmState

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    # ---- plumbing ---------------------------------------------------------------------------------------------
    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", f"req-{time.monotonic_ns()}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _not_found(self, rid: str) -> None:
        self._reply(404, {"error": {"code": "ResourceNotFound", "message": f"The Resource '{rid}' was not found."}})

    def _start(self) -> tuple[str, dict[str, list[str]], Any] | None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        if url.path == "/msi/token":
            if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
                self._reply(401, {"error": "wrong identity header"})
                return None
            with self.arm.lock:
                self.arm.tokens_issued += 1
            self._reply(200, {"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600),
                              "resource": query.get("resource", [""])[0], "token_type": "Bearer"})
            return None
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._reply(401, {"error": {"code": "AuthenticationFailed", "message": "no valid bearer token"}})
            return None
        with self.arm.lock:
            self.arm.calls.append(Call(self.command, url.path, query.get("api-version", [None])[0], body))
        return url.path, query, body

    # ---- verbs ----------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        started = self._start()
        if started is None:
            return
        path = started[0]
        with self.arm.lock:
            found = path.lower() in self.arm.resources
        self._reply(204 if found else 404)

    def do_GET(self) -> None:
        started = self._start()
        if started is None:
            return
        path = started[0]
        parts = path.strip("/").split("/")
        if parts[0] == "operations":
            self._operation(parts[1])
            return
        if path.lower().endswith("/resources") and len(parts) == 5:
            prefix = path.lower().rsplit("/resources", 1)[0] + "/providers/"
            with self.arm.lock:
                found = [{"id": r["id"], "name": r["name"], "type": r["type"], "location": r.get("location")}
                         for rid, r in self.arm.resources.items() if rid.startswith(prefix)]
            self._reply(200, {"value": found})
            return
        with self.arm.lock:
            resource = self.arm.resources.get(path.lower())
        if resource is None:
            self._not_found(path)
        else:
            self._reply(200, resource)

    def do_PUT(self) -> None:
        started = self._start()
        if started is None:
            return
        path, _, body = started
        parts = path.strip("/").split("/")
        rid = path
        resource = {**(body or {}), "id": rid, "name": parts[-1]}
        with self.arm.lock:
            existed = rid.lower() in self.arm.resources
        if len(parts) == 4:  # a resource group: synchronous
            resource["type"] = "Microsoft.Resources/resourceGroups"
            resource["properties"] = {"provisioningState": "Succeeded"}
            with self.arm.lock:
                self.arm.resources[rid.lower()] = resource
            self._reply(200 if existed else 201, resource)
            return
        resource["type"] = f"{parts[5]}/{parts[6]}"
        props = resource.setdefault("properties", {})
        if parts[6] == "publicIPAddresses":
            props["ipAddress"] = f"203.0.113.{next(self.arm.addresses)}"
        if parts[6] == "virtualNetworks":
            for subnet in props.get("subnets", []):
                subnet["id"] = f"{rid}/subnets/{subnet['name']}"  # ARM gives each subnet its id
        if parts[6] == "virtualMachines":
            props["vmId"] = f"vm-{time.monotonic_ns()}"
        props["provisioningState"] = "Succeeded"
        with self.arm.lock:
            self.arm.resources[rid.lower()] = resource
        op = self._new_operation([{"status": "InProgress"}] * self.arm.in_progress_polls + [{"status": "Succeeded"}])
        answer = {**resource, "properties": {**props, "provisioningState": "Updating" if existed else "Creating"}}
        self._reply(200 if existed else 201, answer,
                    {"Azure-AsyncOperation": f"{self._base()}/operations/{op}?api-version=2024-01-01",
                     "Retry-After": self.arm.retry_after})

    def do_DELETE(self) -> None:
        started = self._start()
        if started is None:
            return
        path = started[0].lower()
        with self.arm.lock:
            found = path in self.arm.resources
        if not found:
            self._reply(204)
            return
        op = self._new_operation([202] * self.arm.in_progress_polls + [("delete", path)])
        self._reply(202, None, {"Location": f"{self._base()}/operations/{op}?api-version=2024-01-01",
                                "Retry-After": self.arm.retry_after})

    # ---- long-running operations ------------------------------------------------------------------------------
    def _base(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def _new_operation(self, answers: list[Any]) -> str:
        with self.arm.lock:
            op = f"op{len(self.arm.operations) + 1}"
            self.arm.operations[op] = list(answers)
        return op

    def _operation(self, op: str) -> None:
        with self.arm.lock:
            answers = self.arm.operations.get(op)
            answer = answers.pop(0) if answers and len(answers) > 1 else (answers[0] if answers else None)
            if isinstance(answer, tuple):  # the delete finishes now
                path = answer[1]
                for rid in [r for r in self.arm.resources if r == path or r.startswith(path + "/")]:
                    del self.arm.resources[rid]
                self.arm.operations[op] = [200]
                answer = 200
        if answer is None:
            self._reply(404, {"error": {"code": "NotFound", "message": "no such operation"}})
        elif answer == 202:
            self._reply(202, None, {"Location": f"{self._base()}/operations/{op}?api-version=2024-01-01",
                                    "Retry-After": self.arm.retry_after})
        elif answer == 200:
            self._reply(200, {})
        else:
            self._reply(200, answer, {"Retry-After": self.arm.retry_after})
