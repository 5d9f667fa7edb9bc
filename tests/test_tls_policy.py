"""TLS policy and certificate validity on real nodes: the lowest TLS version, expired certificates, clock skew."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .federation import Federation, make_federation


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
    from node.resources import load_resources
    from provisioner.errors import KitError

    path = tmp_path / "resources.yml"
    assert load_resources(path).tls_min_version == "1.3"
    for value in ('"1.1"', "1.2"):
        path.write_text(f"tls_min_version: {value}\n")
        with pytest.raises(KitError, match=rf'{path}: tls_min_version must be "1.3" or "1.2" \(default "1.3"\), not'):
            load_resources(path)
