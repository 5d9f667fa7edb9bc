"""flctl preflight's checks, without I/O: each one's ok, warn and fail on fixed facts, and the exit code's rule."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flctl.cloud import preflight_checks as checks
from flctl.cloud.preflight import Report, outcome
from flctl.cloud.preflight_checks import Status

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def _cert(names: list[str]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_dns_ok_names_the_addresses_and_fails_as_a_connection():
    """A name that resolves says to what; one that does not fails as a connection check; an address needs none."""
    assert checks.resolves("fl.example", ["10.0.0.5"], None).sentence == "fl.example resolves to 10.0.0.5"
    bad = checks.resolves("fl.invalid", [], "Name or service not known")
    assert (bad.status, bad.connection) == (Status.FAIL, True)
    assert "fl.invalid does not resolve (Name or service not known)" in bad.sentence
    assert checks.resolves("10.1.2.3", [], None).status == Status.OK


def test_san_matching_follows_rfc_6125():
    """Exact names (any case), a wildcard for one leftmost label only, IP addresses exactly."""
    cert = _cert(["fl.example.org", "*.hub.example.org", "10.0.0.5"])

    assert checks.covers_name(cert, "FL.example.org").status == Status.OK
    assert checks.covers_name(cert, "a.hub.example.org").status == Status.OK
    assert checks.covers_name(cert, "a.b.hub.example.org").status == Status.FAIL
    assert checks.covers_name(cert, "10.0.0.5").status == Status.OK
    wrong = checks.covers_name(cert, "10.0.0.6")
    assert wrong.status == Status.FAIL and "it names fl.example.org, *.hub.example.org, 10.0.0.5" in wrong.sentence
    assert "no subject alternative names" in checks.covers_name(_cert([]), "x").sentence


def test_tls_and_alpn_name_a_terminating_load_balancer():
    """TLS 1.2 warns and a missing h2 fails, each naming a TLS-terminating load balancer as the likely cause."""
    assert checks.tls_version("TLSv1.3").status == Status.OK
    old = checks.tls_version("TLSv1.2")
    assert old.status == Status.WARN and "load balancer" in old.sentence
    no_h2 = checks.alpn_h2("http/1.1")
    assert no_h2.status == Status.FAIL and "'http/1.1'" in no_h2.sentence and "load balancer" in no_h2.sentence
    assert checks.alpn_h2(None).status == Status.FAIL
    assert "load balancer" in checks.handshake_failed("h", 1, "WRONG_VERSION_NUMBER").sentence


def test_clock_bounds_allow_for_the_round_trip():
    """Under 10 s ok, over warns, over 300 s fails; a skew within its uncertainty of a bound counts as under it."""
    assert checks.clock_skew(0.4, 0.01).status == Status.OK
    assert checks.clock_skew(-12.0, 0.01).status == Status.WARN
    assert checks.clock_skew(10.5, 1.0).status == Status.OK
    far = checks.clock_skew(-301.0, 0.5)
    assert far.status == Status.FAIL and "301.000 s behind this machine's (±0.500 s)" in far.sentence
    assert "ahead of" in checks.clock_skew(400.0, 0.0).sentence


def test_certificate_validity_days_left_and_expiry():
    """Valid for N days (a warning under 30), expired, or not yet valid, each from the window and now."""
    day = dt.timedelta(days=1)
    assert checks.certificate_validity("s", "its cert", NOW - day, NOW + 100 * day, NOW).sentence == \
        "its cert is valid for 100 more days (until 2027-03-17)"
    assert checks.certificate_validity("s", "its cert", NOW - day, NOW + 29 * day, NOW).status == Status.WARN
    expired = checks.certificate_validity("s", "its cert", NOW - 10 * day, NOW - day, NOW)
    assert expired.status == Status.FAIL and "expired on 2026-12-06 12:00 UTC" in expired.sentence
    assert checks.certificate_validity("s", "its cert", NOW + day, NOW + 9 * day, NOW).status == Status.FAIL


def test_versions_against_the_servers():
    """Python under 3.11 fails; another minor than the server's warns; flctl differing or missing warns."""
    assert checks.python_version("3.10.12", "h", "3.11.7").status == Status.FAIL
    assert checks.python_version("3.12.1", "h", "3.11.7").status == Status.WARN
    assert checks.python_version("3.11.2", "h", "3.11.7").status == Status.OK
    assert checks.python_version("3.11.2", "h", None).status == Status.OK
    assert checks.flctl_version("0.1.0", "h", "0.1.0").status == Status.OK
    assert checks.flctl_version("0.1.0", "h", "0.2.0").status == Status.WARN
    missing = checks.flctl_version(None, "h", "0.2.0", deploying="0.1.0")
    assert missing.status == Status.WARN
    assert missing.sentence == ("flctl is not installed on h yet (the server runs 0.2.0); `flctl deploy` installs this "
                                "machine's 0.1.0")


def test_disk_and_listen_port():
    """Disk under the floor fails (a host's own floor replaces 500 MB); a taken port fails unless the server
    answered on it."""
    assert checks.free_disk(400, "/opt", "h").status == Status.FAIL
    assert checks.free_disk(1000, "/opt", "h").status == Status.WARN
    assert checks.free_disk(1000, "/opt", "h", floor_mb=50).status == Status.OK
    assert checks.free_disk(40, "/opt", "h", floor_mb=50).status == Status.FAIL
    assert checks.listen_port(8443, "h", None, False).status == Status.OK
    taken = checks.listen_port(8443, "h", "address already in use", False)
    assert taken.status == Status.FAIL and "already taken on h (address already in use)" in taken.sentence
    assert checks.listen_port(8443, "h", "address already in use", True).status == Status.OK


def test_exit_code_is_3_only_when_every_failure_is_a_connection():
    """0 with warnings only; 3 when only connection checks fail; 1 as soon as another check fails."""
    warned = Report("s", "here", [checks.warn("tls", "x"), checks.ok("dns", "y")])
    unreachable = Report("s", "here", [checks.fail("port", "x", connection=True)])
    broken = Report("t", "here", [checks.fail("san", "x")])

    assert outcome([warned]) == 0
    assert outcome([warned, unreachable]) == 3
    assert outcome([unreachable, broken]) == 1


def test_checks_seen_from_a_host_fold_into_one_row():
    """All ok: the one sentence given; otherwise the worst status and the sentences of the rows not ok."""
    fine = [checks.ok("tls", "a"), checks.ok("alpn", "b")]
    mixed = [checks.warn("tls", "old TLS"), checks.fail("alpn", "no h2"), checks.ok("san", "c")]

    assert checks.seen_from("tls (host)", "h", fine, "all good").sentence == "from h: all good"
    folded = checks.seen_from("tls (host)", "h", mixed, "all good")
    assert (folded.status, folded.sentence, folded.connection) == (Status.FAIL, "from h: old TLS; no h2", False)
