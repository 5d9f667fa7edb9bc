"""The checks of `flctl preflight`, pure: each takes what a probe found and returns one Row (a check's name, ok / warn /
fail and one sentence). Nothing here connects, reads a file or looks at the clock: the probes
(flctl.cloud.preflight_probes) find the facts and flctl.cloud.preflight puts the two together.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509

SKEW_WARN_S = 10.0
"""Clock skew above this is a warning: the logs of the server and the sites no longer line up."""
SKEW_FAIL_S = 300.0
"""Clock skew above this fails: sites refuse signed jobs whose time window they cannot place (job_signing's
CLOCK_SKEW_S), and certificates look not yet valid or expired on one side."""
EXPIRY_WARN_DAYS = 30
"""A certificate with fewer days left is a warning (what `flctl certs` marks)."""
MIN_PYTHON = (3, 11)
DISK_WARN_MB = 2048
"""Free disk under this is a warning where no host sets its own floor (`min_free_mb`)."""
DISK_FAIL_MB = 500
"""Free disk under this fails (a deployed host's `min_free_mb` replaces it)."""
LOAD_BALANCER = ("a load balancer or proxy that terminates TLS in front of the server is the likely cause: flctl "
                 "needs end-to-end mutual TLS, so pass TCP through to the server (TCP or TLS passthrough mode)")


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Row:
    """One check's outcome. `connection`: a failure to reach something (DNS, a port, SSH), which alone makes the
    exit code 3 instead of 1."""

    name: str
    status: Status
    sentence: str
    connection: bool = False


def ok(name: str, sentence: str) -> Row:
    return Row(name, Status.OK, sentence)


def warn(name: str, sentence: str) -> Row:
    return Row(name, Status.WARN, sentence)


def fail(name: str, sentence: str, connection: bool = False) -> Row:
    return Row(name, Status.FAIL, sentence, connection)


def wss_tunnel(route: str, problem: str | None) -> Row:
    """A site on `transport: wss`: whether a WebSocket to the server's tunnel opened (`route`: where, how)."""
    if problem is None:
        return ok("transport", f"wss: a WebSocket to {route} opened with this kit's certificate")
    return fail("transport", f"wss: {problem}", connection=True)


def not_checked(name: str, because: Row) -> Row:
    """A check that needs one that failed: a failure of the same kind, saying which."""
    return fail(name, f"not checked: the {because.name} check failed", because.connection)


# ---- the network: name, port, TLS ---------------------------------------------------------------------------------
def resolves(host: str, addresses: list[str], error: str | None) -> Row:
    """The server's name resolves (and to what)."""
    if _is_ip(host):
        return ok("dns", f"{host} is an address: nothing to resolve")
    if error is not None or not addresses:
        return fail("dns", f"{host} does not resolve ({error or 'no address'}); add a DNS record or an /etc/hosts "
                           "line for it, or give the server an address in project.yml", connection=True)
    return ok("dns", f"{host} resolves to {', '.join(addresses)}")


def port_open(host: str, port: int, error: str | None) -> Row:
    """The server's port accepts a TCP connection."""
    if error is not None:
        return fail("port", f"{host}:{port} cannot be reached ({error}); is the server running, and does a firewall "
                            f"or security group let this machine in on {port}?", connection=True)
    return ok("port", f"{host}:{port} accepts connections")


def handshake_failed(host: str, port: int, error: str) -> Row:
    """No TLS handshake at all: the port speaks something else, or something in between ends TLS."""
    return fail("tls", f"no TLS handshake with {host}:{port} ({error}); {LOAD_BALANCER}")


def chains_to_ca(cert: x509.Certificate, issued_by_ca: bool) -> Row:
    """The server's certificate was issued by the kit's CA."""
    if issued_by_ca:
        return ok("chain", f"the server's certificate ({_cn(cert)}) was issued by the kit's CA")
    return fail("chain", f"the server's certificate ({_cn(cert)}, issued by {cert.issuer.rfc4514_string()}) was not "
                         f"issued by the kit's CA: another project's server, or {LOAD_BALANCER}")


def covers_name(cert: x509.Certificate, host: str) -> Row:
    """The server's certificate's SAN covers the name dialled."""
    names = san_names(cert)
    if any(_matches(pattern, host) for pattern in names):
        return ok("san", f"the server's certificate covers {host}")
    held = ", ".join(names) if names else "no subject alternative names"
    return fail("san", f"the server's certificate does not cover {host} (it names {held}); dial one of those names, "
                       "or add the name to the server's `hosts` in project.yml and provision again")


def tls_version(version: str | None) -> Row:
    if version == "TLSv1.3":
        return ok("tls", "TLS 1.3")
    return warn("tls", f"the handshake stopped at {version or 'an unknown version'}, not TLS 1.3 (flctl's server "
                       f"speaks TLS 1.3 unless told otherwise); {LOAD_BALANCER}")


def alpn_h2(protocol: str | None) -> Row:
    if protocol == "h2":
        return ok("alpn", "HTTP/2 agreed (ALPN h2), as gRPC needs")
    said = f"'{protocol}'" if protocol else "none"
    return fail("alpn", f"the server did not agree to HTTP/2 (ALPN h2; it chose {said}), which gRPC needs; "
                        f"{LOAD_BALANCER}")


def seen_from(name: str, where: str, rows: list[Row], all_ok: str) -> Row:
    """Several checks made from a host folded into one row: the worst status, the sentences of those not ok (or
    `all_ok` when every one is)."""
    if all(r.status == Status.OK for r in rows):
        return Row(name, Status.OK, f"from {where}: {all_ok}")
    worst = Status.FAIL if any(r.status == Status.FAIL for r in rows) else Status.WARN
    said = "; ".join(r.sentence for r in rows if r.status != Status.OK)
    return Row(name, worst, f"from {where}: {said}", all(r.connection for r in rows if r.status == worst))


# ---- what the server says: clock and versions ----------------------------------------------------------------------
def clock_skew(skew_s: float, uncertainty_s: float) -> Row:
    """The server's clock (its ServerInfo answer) against this machine's, within half the round trip."""
    size = abs(skew_s)
    side = "ahead of" if skew_s > 0 else "behind"
    said = f"the server's clock is {size:.3f} s {side} this machine's (±{uncertainty_s:.3f} s)"
    if size - uncertainty_s > SKEW_FAIL_S:
        return fail("clock", f"{said}, over the {SKEW_FAIL_S:g} s bound: sites would refuse signed jobs; "
                             "synchronise both clocks (NTP, chrony)")
    if size - uncertainty_s > SKEW_WARN_S:
        return warn("clock", f"{said}, over {SKEW_WARN_S:g} s (bound {SKEW_FAIL_S:g} s); synchronise both clocks "
                             "(NTP, chrony)")
    return ok("clock", f"{said}, under the {SKEW_WARN_S:g} s bound")


def python_version(here: str, where: str, server: str | None) -> Row:
    """Python on the host: 3.11 or newer, and the server's major.minor."""
    if _version(here)[:2] < MIN_PYTHON:
        return fail("python", f"Python {here} on {where}; flctl needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer")
    if server is None:
        return ok("python", f"Python {here} on {where} (the server's not known)")
    if _version(here)[:2] != _version(server)[:2]:
        return warn("python", f"Python {here} on {where}, {server} on the server: a job's code runs under both, so "
                              "test it under both or use one Python")
    return ok("python", f"Python {here} on {where}, {server} on the server")


def flctl_version(here: str | None, where: str, server: str | None, deploying: str | None = None) -> Row:
    """flctl on the host against the server's; `deploying`: the version `flctl deploy` would install there."""
    if here is None:
        installs = f"; `flctl deploy` installs this machine's {deploying}" if deploying else ""
        return warn("flctl", f"flctl is not installed on {where} yet (the server runs {server or 'an unknown one'})"
                             + installs)
    if server is None:
        return ok("flctl", f"flctl {here} on {where} (the server's not known)")
    if here != server:
        return warn("flctl", f"flctl {here} on {where}, {server} on the server; run one version everywhere "
                             "(`flctl deploy upgrade INVENTORY`)")
    return ok("flctl", f"flctl {here} on {where} and on the server")


# ---- the kit ---------------------------------------------------------------------------------------------------------
def kit_signature(problems: list[str]) -> Row:
    if problems:
        return fail("signature", "the kit's signature does not verify: " + "; ".join(problems)
                    + "; get a fresh kit from the project admin")
    return ok("signature", "the kit's signature verifies (every file in startup/ as signed)")


def certificate_validity(label: str, whose: str, not_before: dt.datetime, not_after: dt.datetime,
                         now: dt.datetime) -> Row:
    """One certificate's validity window against now, and its days to expiry; `whose` names it in the sentence."""
    name = f"cert {label}"
    if now < not_before:
        return fail(name, f"{whose} is not valid before {not_before:%Y-%m-%d %H:%M} UTC (now {now:%Y-%m-%d %H:%M} "
                          "UTC here); check this machine's clock and the provisioner's")
    if now >= not_after:
        return fail(name, f"{whose} expired on {not_after:%Y-%m-%d %H:%M} UTC; renew it (`flctl certs renew` or "
                          "`flctl provision renew`) and hand out the new kit")
    days = (not_after - now).days
    if days < EXPIRY_WARN_DAYS:
        return warn(name, f"{whose} expires in {days} days ({not_after:%Y-%m-%d}); renew it soon "
                          f"(`flctl certs renew --expiring {EXPIRY_WARN_DAYS}`)")
    return ok(name, f"{whose} is valid for {days} more days (until {not_after:%Y-%m-%d})")


# ---- the host that will run the node ---------------------------------------------------------------------------------
def free_disk(free_mb: int, folder: str, where: str, floor_mb: int | None = None) -> Row:
    """Free disk where the node will keep its workspace; `floor_mb` is the host's own minimum, if it sets one."""
    least = DISK_FAIL_MB if floor_mb is None else floor_mb
    said = f"{free_mb:,} MB free in {folder} on {where}"
    if free_mb < least:
        return fail("disk", f"{said}, under the {least:,} MB needed; free some space or choose another folder")
    if floor_mb is None and free_mb < DISK_WARN_MB:
        return warn("disk", f"{said}: enough to start, little for models and checkpoints (under {DISK_WARN_MB:,} MB)")
    return ok("disk", said)


def listen_port(port: int, where: str, taken: str | None, server_answers: bool) -> Row:
    """The server's port is free on the host that will listen; `taken` says how binding it failed."""
    if taken is None:
        return ok("listen", f"port {port} is free on {where}")
    if server_answers:
        return ok("listen", f"port {port} is in use on {where}, by a server of this project that answered on it "
                            "(this server already running)")
    return fail("listen", f"port {port} is already taken on {where} ({taken}); stop what holds it (`ss -ltnp "
                          f"'sport = :{port}'` names it) or give the server another port in project.yml")


# ---- small pure helpers ---------------------------------------------------------------------------------------------
def san_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses in the certificate's subject alternative names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _matches(pattern: str, host: str) -> bool:
    """RFC 6125: exact (case-insensitive) or a wildcard standing for the whole leftmost label; IPs exactly."""
    if _is_ip(pattern) or _is_ip(host):
        return _is_ip(pattern) and _is_ip(host) and ipaddress.ip_address(pattern) == ipaddress.ip_address(host)
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return f"CN={names[0].value!s}" if names else cert.subject.rfc4514_string()


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
