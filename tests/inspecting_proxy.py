"""A CONNECT proxy that inspects TLS, as some corporate proxies do: it answers the CONNECT, ends the client's TLS
with a certificate for the name asked, issued by its own CA (which the client's machine trusts), and opens a TLS
connection of its own, without a client certificate, to the real server (`upstream_port` on 127.0.0.1), copying
the decrypted bytes both ways. A site's client certificate therefore never reaches the server through it. When
its own TLS to the server fails it answers `502 Bad Gateway` inside the client's TLS."""

from __future__ import annotations

import contextlib
import datetime as dt
import select
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _cert(subject: str, issuer: x509.Name | None, key: ec.EllipticCurvePrivateKey,
          signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        import ipaddress
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


class InspectingProxy:
    def __init__(self, root: Path, upstream_port: int) -> None:
        ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = _cert("Corporate Inspection CA", None, ca_key, ca_key, ca=True)
        leaf = _cert("localhost", ca.subject, leaf_key, ca_key, ca=False)
        self.ca_file = root / "inspection-ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        chain, key = root / "inspection-leaf.pem", root / "inspection-leaf.key"
        chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self._front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._front.load_cert_chain(chain, key)
        self._back = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._back.check_hostname = False
        self._back.verify_mode = ssl.CERT_NONE
        self._upstream = upstream_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self.inspected = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            host = request.split(b" ")[1].decode().rpartition(":")[0]
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            front = self._front.wrap_socket(conn, server_side=True)
            self.inspected += 1
            try:
                back = self._back.wrap_socket(socket.create_connection(("127.0.0.1", self._upstream), timeout=5),
                                              server_hostname=host)
                back.settimeout(None)
            except (OSError, ssl.SSLError):
                front.recv(65536)  # the WebSocket upgrade request, answered as a proxy that could not connect
                front.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                front.close()
                return
            _pump(front, back)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()


def _pump(front: ssl.SSLSocket, back: ssl.SSLSocket) -> None:
    """Copy both ways in one thread until either end closes. One thread per connection, not one per direction:
    OpenSSL does not allow one SSL object to be read in one thread while it is written in another (the proxy then
    broke a tunnel now and then: a preflight over it did not connect within its 5 s, 1 run in 8)."""
    other = {front: back, back: front}
    with contextlib.suppress(OSError, ValueError, EOFError):
        while True:
            ready = [end for end in (front, back) if end.pending()] or select.select([front, back], [], [])[0]
            for end in ready:
                try:
                    data = end.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                if not data:
                    raise EOFError
                other[end].sendall(data)
    for end in (front, back):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            end.close()
