"""The lowest TLS version the server accepts: TLS 1.3, or 1.2 too where `local/resources.yml` says
`tls_min_version: "1.2"`.

gRPC Python (1.85) has no minimum-version argument for server credentials (grpc/grpc#37305; the core setter,
grpc/grpc#43074, and the Python argument, grpc/grpc#43080, are not released), and no environment variable for it.
What it has is GRPC_SSL_CIPHER_SUITES, read once when grpc is imported, which sets the TLS 1.2 cipher suites only
(TLS 1.3's suites are fixed). For TLS 1.3 only, the server sets it to one suite that its own key cannot sign for
(an RSA suite for an EC key, an ECDSA suite for an RSA key): no TLS 1.2 handshake can complete ("no shared
cipher"), and TLS 1.3 is untouched. Measured with `openssl s_client -tls1_2` / `-tls1_3` against a gRPC server.

Since the variable counts only before grpc is imported, `flctl node start` prepares it first (`prepare`), and
starts itself again with the right environment when the setting asks for another (`require`). After the server
listens, `tls12_accepted` tries a TLS 1.2 handshake on it: a server that should refuse TLS 1.2 and does not is not
left serving (`check_served`). This module imports nothing of gRPC's.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from flctl.node.errors import NodeError

log = logging.getLogger("flctl.tls")

CIPHERS_ENV = "GRPC_SSL_CIPHER_SUITES"
PREPARED_ENV = "FLCTL_TLS_MIN_VERSION"
"""Set by this module: the minimum TLS version this process's environment was prepared for."""
VERSIONS = ("1.2", "1.3")
DEFAULT = "1.3"


def refusing_tls12(key_pem: bytes) -> str:
    """A TLS 1.2 cipher suite list that a server with `key_pem` can never use."""
    key = load_pem_private_key(key_pem, password=None)
    return "ECDHE-ECDSA-AES128-GCM-SHA256" if isinstance(key, rsa.RSAPrivateKey) else "ECDHE-RSA-AES128-GCM-SHA256"


def _apply(env: dict[str, str] | os._Environ[str], key_pem: bytes, min_version: str) -> None:
    if min_version == "1.3":
        env[CIPHERS_ENV] = refusing_tls12(key_pem)
    elif env.get(PREPARED_ENV) == "1.3":
        env.pop(CIPHERS_ENV, None)  # ours, not the operator's: gRPC's own TLS 1.2 suites
    env[PREPARED_ENV] = min_version


def prepare(key_pem: bytes) -> None:
    """Before gRPC is imported: the default (TLS 1.3 only), unless this process was started again for another."""
    if "grpc" not in sys.modules and PREPARED_ENV not in os.environ:
        _apply(os.environ, key_pem, DEFAULT)


def require(key_pem: bytes, min_version: str) -> None:
    """Make this process's gRPC enforce `min_version`: in place before gRPC is imported, else by starting this
    command again (same process id) with the environment it needs."""
    if os.environ.get(PREPARED_ENV) == min_version:
        return
    if "grpc" not in sys.modules:
        _apply(os.environ, key_pem, min_version)
        return
    argv = sys.orig_argv
    if len(argv) < 2 or not (Path(argv[1]).name == "flctl" or argv[1] == "-m"):
        raise NodeError(f"cannot apply tls_min_version {min_version} in this process (gRPC is already loaded); "
                        "start the server with `flctl node start`")
    env = dict(os.environ)
    _apply(env, key_pem, min_version)
    log.info("starting again with TLS %s as the lowest version", min_version)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)


def tls12_accepted(address: str, cert_file: Path, key_file: Path, timeout_s: float = 10) -> bool:
    """Whether the server at `address` (host:port) completes a TLS 1.2 handshake with this certificate."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only the protocol version is under test here
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host):
                return True
        except ssl.SSLError:
            return False


def check_served(address: str, cert_file: Path, key_file: Path, min_version: str) -> None:
    """Raise NodeError when the listening server accepts TLS 1.2 although `min_version` is 1.3."""
    try:
        accepted = tls12_accepted(address, cert_file, key_file)
    except OSError as exc:
        raise NodeError(f"cannot check the TLS versions the server on {address} accepts: connecting to it failed "
                        f"({exc}); not serving") from None
    if min_version == "1.3" and accepted:
        raise NodeError(f"the server on {address} accepted a TLS 1.2 handshake although tls_min_version is 1.3 "
                        f"({CIPHERS_ENV}={os.environ.get(CIPHERS_ENV)!r}); not serving")
    if min_version == "1.3":
        log.info("TLS 1.3 only: a TLS 1.2 handshake was refused (tls_min_version in local/resources.yml)")
    elif accepted:
        log.warning("TLS 1.2 is accepted: a TLS 1.2 handshake completed (tls_min_version: \"1.2\" in "
                    "local/resources.yml)")
    else:
        log.warning("tls_min_version is 1.2 but a TLS 1.2 handshake was refused; check %s", CIPHERS_ENV)
