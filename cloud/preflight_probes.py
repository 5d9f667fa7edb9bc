"""The probes of `flctl preflight`: what is found by doing (a DNS lookup, a TCP connect, a TLS handshake with the kit's
certificate, binding a port, reading free disk), here or on a host over SSH. Each returns plain facts, an error as a
short text rather than an exception; flctl.cloud.preflight_checks judges them.
"""

from __future__ import annotations

import base64
import errno
import json
import shutil
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from flctl.cloud.connector import Connector
from flctl.cloud.remote_scripts import q


@dataclass(frozen=True)
class Handshake:
    """What a TLS handshake with the server gave: its certificate, the version and the ALPN protocol agreed, or why
    there was no handshake."""

    cert: x509.Certificate | None = None
    version: str | None = None
    alpn: str | None = None
    error: str | None = None


def resolve(host: str) -> tuple[list[str], str | None]:
    """The addresses `host` resolves to here, or why it does not."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return [], str(exc.args[-1]) if exc.args else str(exc)
    return list(dict.fromkeys(str(info[4][0]) for info in infos)), None


def connect(host: str, port: int, timeout_s: float) -> str | None:
    """None when `host:port` accepts a TCP connection within `timeout_s`, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def handshake(host: str, port: int, cert_file: Path, key_file: Path, timeout_s: float) -> Handshake:
    """A TLS handshake as a peer of the project: this kit's certificate offered, ALPN h2 asked, TLS 1.2 or 1.3.
    The server's certificate is taken without verifying it, so that the checks can say what is wrong with it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        return Handshake(error=f"the kit's certificate or key cannot be loaded: {exc}")
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            cert = x509.load_der_x509_certificate(der) if der else None
            return Handshake(cert, tls.version(), tls.selected_alpn_protocol())
    except ssl.SSLError as exc:
        return Handshake(error=exc.reason or str(exc))
    except TimeoutError:
        return Handshake(error=f"no handshake within {timeout_s:g} s")
    except (OSError, ValueError) as exc:
        return Handshake(error=getattr(exc, "strerror", None) or str(exc))


def free_mb(folder: Path) -> int:
    """Free disk, in MB, on the file system that holds `folder` (or its nearest existing parent)."""
    path = folder.absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free // 2**20


def port_taken(port: int, host: str = "0.0.0.0") -> str | None:
    """None when a listening socket could bind `port` here, else why not (what holds it is not named)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to a server
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            return "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return None


# ---- on a host, over SSH ------------------------------------------------------------------------------------------
HOST_PROBE = r'''
import errno, json, os, platform, shutil, socket, sys
d, host, port, listen = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
out = {"python": platform.python_version()}
p = d
while not os.path.exists(p):
    p = os.path.dirname(p)
out["free_mb"] = shutil.disk_usage(p).free // 2**20
try:
    with open(os.path.join(d, "current", "release.json")) as f:
        wheels = json.load(f).get("wheels", {})
    out["flctl"] = next((w.split("-")[1] for w in wheels if w.startswith("flctl-")), None)
except (OSError, ValueError, AttributeError):
    out["flctl"] = None
try:
    out["addresses"] = sorted({i[4][0] for i in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)})
    out["dns_error"] = None
except (OSError, UnicodeError) as e:
    out["addresses"], out["dns_error"] = [], str(e.args[-1] if e.args else e)
try:
    socket.create_connection((host, port), timeout=5).close()
    out["connect_error"] = None
except OSError as e:
    out["connect_error"] = "no answer within 5 s" if isinstance(e, TimeoutError) else (e.strerror or str(e))
out["tls"] = None
if out["connect_error"] is None:
    import base64, ssl
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname, c.verify_mode = False, ssl.CERT_NONE
    c.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=5) as r, c.wrap_socket(r, server_hostname=host) as t:
            out["tls"] = {"cert": base64.b64encode(t.getpeercert(True) or b"").decode(), "version": t.version(),
                          "alpn": t.selected_alpn_protocol(), "error": None}
    except (OSError, ssl.SSLError) as e:
        out["tls"] = {"cert": "", "version": None, "alpn": None, "error": getattr(e, "reason", None) or str(e)}
out["taken"] = None
if listen:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("0.0.0.0", port))
        s.listen(1)
    except OSError as e:
        out["taken"] = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
    s.close()
import time
out["time"] = time.time()
print(json.dumps(out))
'''


@dataclass(frozen=True)
class HostFacts:
    """What HOST_PROBE found on a host: its Python, free disk in the install folder, the flctl its current release
    installed, the server's name and port as seen from there, and (the server's host) whether the port is free."""

    python: str
    free_mb: int
    flctl: str | None
    addresses: list[str]
    dns_error: str | None
    connect_error: str | None
    taken: str | None
    time: float
    tls: Handshake | None = None  # the server's TLS as the host sees it (None: its port was not reached)


class ProbeFailed(Exception):
    """The host probe could not run or answered nonsense; the message says why, in one sentence."""


def probe_host(conn: Connector, python: str, install_dir: str, server_host: str, port: int,
               listens: bool) -> HostFacts:
    """Run HOST_PROBE on the host with its Python."""
    command = (f"{q(python)} -c {q(HOST_PROBE)} {q(install_dir)} {q(server_host)} {port} "
               f"{'1' if listens else '0'}")
    result = conn.run(command, timeout_s=60)
    if result.exit_code != 0:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.exit_code}"])[-1]
        if result.exit_code == 127 or "not found" in last:
            raise ProbeFailed(f"there is no Python `{python}` on the host; install Python 3.11+ there or set "
                              "`python` in the inventory")
        raise ProbeFailed(f"probing the host with {python} failed ({last})")
    try:
        data = json.loads(result.stdout)
        return HostFacts(str(data["python"]), int(data["free_mb"]), data["flctl"], list(data["addresses"]),
                         data["dns_error"], data["connect_error"], data["taken"], float(data["time"]),
                         _handshake(data["tls"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ProbeFailed(f"{python} on the host gave an unreadable answer ({exc})") from None


def environment_python() -> str:
    """This interpreter's version, for a kit checked on this machine."""
    import platform

    return platform.python_version()



def _handshake(seen: dict[str, Any] | None) -> Handshake | None:
    """HOST_PROBE's handshake (the certificate base64 DER) as a Handshake."""
    if seen is None:
        return None
    der = base64.b64decode(seen["cert"]) if seen["cert"] else b""
    return Handshake(x509.load_der_x509_certificate(der) if der else None, seen["version"], seen["alpn"],
                     seen["error"])
