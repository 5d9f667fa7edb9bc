"""Signed jobs: the submitting admin signs the job; the server and every site verify it.

The signature (format v2) covers `flctl-job-v2\\n` followed by the job's claims, a JSON object sent as signed:
the bundle's sha256, the job's id (chosen by the admin's client, so the server cannot give it another), its name,
its target sites (a list, or "all") and a time window (not before / not after, seconds since the epoch). A site
runs a bundle only under the id, at a site and in the window it was signed for, so a server cannot replay an old
signed job under a new id, to another site or later. Format v1 (the bundle's digest alone) is refused with a
sentence, never crashed on.

Verification also checks that the signer's certificate was issued by the project CA, is an admin certificate,
is valid now and is not revoked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from flctl.node.security.path_names import BadName, check_path_name
from flctl.provisioner import pki

VERSION = 2
CONTEXT = b"flctl-job-v2\n"
VALID_FOR_S = 7 * 24 * 3600.0
"""How long after it is signed a job may start at a site (it may wait in the server's queue that long)."""
CLOCK_SKEW_S = 300.0
"""A site whose clock is this far behind the admin's still accepts a job signed just now."""


class SignatureRefused(Exception):
    """The bundle's signature or its signer cannot be trusted; the message says why."""


@dataclass(frozen=True)
class JobClaims:
    """What an admin signs about a job."""

    sha256: str
    job_id: str
    name: str
    sites: tuple[str, ...] | str  # site names, or "all"
    not_before: float
    not_after: float
    version: int = VERSION

    def to_json(self) -> str:
        sites: list[str] | str = self.sites if isinstance(self.sites, str) else list(self.sites)
        return json.dumps({"v": self.version, "sha256": self.sha256, "job_id": self.job_id, "name": self.name,
                           "sites": sites, "not_before": self.not_before, "not_after": self.not_after},
                          sort_keys=True, separators=(",", ":"))

    def targets(self, site: str) -> bool:
        return self.sites == "all" or site in self.sites

    def shown_sites(self) -> str:
        return "all sites" if isinstance(self.sites, str) else ", ".join(self.sites) or "no site"


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def new_claims(bundle: bytes, name: str, sites: list[str] | tuple[str, ...] | str, *,
               valid_for_s: float = VALID_FOR_S, job_id: str | None = None, now: float | None = None) -> JobClaims:
    """Claims for a job about to be submitted: a fresh job id, valid from now for `valid_for_s`."""
    start = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    return JobClaims(hashlib.sha256(bundle).hexdigest(), job_id or new_job_id(), name,
                     "all" if sites == "all" else tuple(sorted(sites)), start, start + valid_for_s)


def sign_claims(claims_json: str, key_pem: bytes) -> bytes:
    return pki.sign_bytes(pki.load_key(key_pem), CONTEXT + claims_json.encode())


def parse_claims(claims_json: str) -> JobClaims:
    """The claims in `claims_json` (as signed); SignatureRefused when they are missing, of another format or
    malformed."""
    if not claims_json:
        raise SignatureRefused("the job is signed in the old format (v1: the bundle's digest alone, which does not "
                               "name the job, its sites or a time window); sites no longer accept it: submit the "
                               "job again with this version of flctl")
    try:
        value: Any = json.loads(claims_json)
    except ValueError:
        raise SignatureRefused("the job's signed claims are not JSON") from None
    if not isinstance(value, dict):
        raise SignatureRefused("the job's signed claims are not a JSON object")
    version = value.get("v")
    if version != VERSION:
        raise SignatureRefused(f"the job's signature is of format v{version}, which this node does not know "
                               f"(it knows v{VERSION}); submit the job again with this node's version of flctl")
    try:
        sites = value["sites"]
        if sites != "all" and not (isinstance(sites, list) and all(isinstance(s, str) for s in sites)):
            raise TypeError("sites")
        claims = JobClaims(sha256=str(value["sha256"]), job_id=str(value["job_id"]), name=str(value["name"]),
                           sites="all" if sites == "all" else tuple(sites),
                           not_before=float(value["not_before"]), not_after=float(value["not_after"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SignatureRefused(f"the job's signed claims are malformed ({exc})") from None
    try:
        check_path_name(claims.job_id, "job id")
    except BadName as exc:
        raise SignatureRefused(str(exc)) from None
    return claims


def verify_bundle(bundle: bytes, signature: bytes, signer_cert_pem: bytes, ca_pem: bytes, claims_json: str,
                  revoked: Container[int] = (), now: dt.datetime | None = None) -> tuple[pki.CertIdentity, JobClaims]:
    """The signer's identity and the signed claims when everything checks out (signer, signature, the bundle's
    digest, the time window); SignatureRefused otherwise. Whom the job is for is `check_target`'s part."""
    now = now or dt.datetime.now(dt.UTC)
    if not signature or not signer_cert_pem:
        raise SignatureRefused("the job is not signed; submit it with `flctl job submit`, which signs it")
    try:
        cert = x509.load_pem_x509_certificate(signer_cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise SignatureRefused("the signer's certificate is not a PEM certificate") from None
    if not pki.issued_by(cert, ca):
        raise SignatureRefused("the job was signed with a certificate from another CA")
    try:
        who = pki.identity_of(cert)
    except ValueError as exc:
        raise SignatureRefused(f"the signer's certificate is not an flctl identity: {exc}") from None
    if who.kind != "admin":
        raise SignatureRefused(f"the job was signed by {who.kind} '{who.name}', not by an admin")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SignatureRefused(f"the signer's certificate ({who.name}) is not valid now "
                               f"(expires {cert.not_valid_after_utc:%Y-%m-%d})")
    if cert.serial_number in revoked:
        raise SignatureRefused(f"the signer's certificate ({who.name}) was revoked")
    claims = parse_claims(claims_json)
    if not pki.verify_bytes(cert.public_key(), signature, CONTEXT + claims_json.encode()):
        raise SignatureRefused("the job's signature does not match what it claims (the job id, name, sites or "
                               "time window were changed after it was signed)")
    if claims.sha256 != hashlib.sha256(bundle).hexdigest():
        raise SignatureRefused("the job bundle was changed after it was signed (its signature does not match)")
    moment = now.timestamp()
    if moment + CLOCK_SKEW_S < claims.not_before:
        raise SignatureRefused(f"the job's signature is not valid before {_when(claims.not_before)} (now "
                               f"{_when(moment)}); check this node's clock")
    if moment > claims.not_after:
        raise SignatureRefused(f"the job's signature expired at {_when(claims.not_after)} (now {_when(moment)}); "
                               "submit the job again")
    return who, claims


def check_target(claims: JobClaims, job_id: str, name: str | None = None, site: str | None = None) -> str:
    """Why the signed `claims` do not allow running job `job_id` (named `name`, at `site`); '' when they do."""
    if claims.job_id != job_id:
        return (f"the bundle was signed for job {claims.job_id}, not for job {job_id} (a signed job cannot be "
                "run again under another id)")
    if name is not None and claims.name != name:
        return f"the job was signed as '{claims.name}', not as '{name}'"
    if site is not None and not claims.targets(site):
        return f"the job was signed for {claims.shown_sites()}, not for {site}"
    return ""


def _when(seconds: float) -> str:
    return f"{dt.datetime.fromtimestamp(seconds, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
