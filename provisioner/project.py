"""The `project.yml` schema (api_version 1): who takes part in a federation.

The pydantic models are the reference for the file: each field's description is
its documentation. `Project.participants()` flattens them for the builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from flctl.provisioner.names import (
    check_admin_name,
    check_host,
    check_project_name,
    check_server_name,
    check_simple_name,
)
from flctl.provisioner.participant_kinds import KEY_TYPES, KINDS, ROLES, KeyType, Kind, Role

__all__ = ["KEY_TYPES", "KINDS", "ROLES", "KeyType", "Kind", "Role"]  # their home is participant_kinds


ProjectName = Annotated[str, AfterValidator(check_project_name)]
SimpleName = Annotated[str, AfterValidator(check_simple_name)]
AdminName = Annotated[str, AfterValidator(check_admin_name)]
Host = Annotated[str, AfterValidator(check_host)]
ServerName = Annotated[str, AfterValidator(check_server_name)]
Transport = Literal["grpc", "wss"]
TRANSPORTS: tuple[Transport, ...] = ("grpc", "wss")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSpec(_Strict):
    """The one server of the federation."""

    name: ServerName = Field(description="DNS name (or IP) that sites and admins connect to; the certificate CN")
    org: SimpleName = Field(description="Organisation that runs the server")
    port: int = Field(8443, ge=1, le=65535, description="The one TCP port for sites and admins (gRPC, mTLS)")
    hosts: list[Host] = Field(
        default_factory=list, description="More DNS names and IP addresses the server certificate is valid for"
    )
    wss_port: int | None = Field(
        None, ge=1, le=65535,
        description="A second TCP port where the server takes sites on WebSocket over HTTPS (`transport: wss`, for "
                    "sites behind an HTTP proxy); none: gRPC only")


class SiteSpec(_Strict):
    """A site: an FL client that trains on its own data."""

    name: SimpleName = Field(description="Site name, unique in the project")
    org: SimpleName = Field(description="Organisation the site belongs to")
    parent: SimpleName | None = Field(
        None, description="The relay this site connects to (a name under relays); none: the server itself")
    failover: Literal["server"] | None = Field(
        None, description="server: while its relay is down, the site connects to the server itself (and goes back "
                          "to the relay once it answers again); only for a site with a relay parent")
    transport: Transport = Field(
        "grpc", description="How the site reaches the server: grpc (the default), or wss (gRPC's own bytes, mutual "
                            "TLS and all, inside a WebSocket on HTTPS to the server's wss_port, through the site's "
                            "HTTPS_PROXY where it has one); its local/resources.yml may change it")


class RelaySpec(_Strict):
    """A relay: sites connect to it as to a server; it connects upward (to the server or another relay) as a site,
    passes tasks down and sends one aggregated result up (a hierarchical federation)."""

    name: SimpleName = Field(description="Relay name, unique in the project; the certificate CN")
    org: SimpleName = Field(description="Organisation that runs the relay")
    parent: SimpleName | None = Field(
        None, description="The relay this relay connects to; none (or 'server'): the server itself")
    host: Host | None = Field(None, description="DNS name or IP its sites connect to [default: its name]")
    port: int = Field(8443, ge=1, le=65535, description="The TCP port its sites connect to (gRPC, mTLS)")
    hosts: list[Host] = Field(
        default_factory=list, description="More DNS names and IP addresses the relay's certificate is valid for")

    def address(self) -> str:
        """The host its sites connect to."""
        return self.host or self.name


class AdminSpec(_Strict):
    """A person who drives the federation from `flctl`."""

    name: AdminName = Field(description="E-mail address (or simple name) of the admin")
    org: SimpleName = Field(description="Organisation of the admin")
    role: Role = Field(description="One of project_admin, org_admin, lead, member")


class CaSpec(_Strict):
    """The project's certificate authority."""

    key: KeyType = Field("ec-p256", description="Key type of the CA and of every certificate it issues")
    valid_days: int = Field(3650, ge=1, le=36500, description="Lifetime of the CA certificate")


class CertSpec(_Strict):
    """Participant certificates."""

    valid_days: int = Field(365, ge=1, le=36500, description="Lifetime of each certificate (capped at the CA's)")


class HeartbeatSpec(_Strict):
    """How sites prove they are alive."""

    interval_s: float = Field(5.0, gt=0, le=3600, description="Seconds between a site's heartbeats")
    timeout_s: float = Field(30.0, gt=0, le=86400, description="Silence after which the server marks a site offline")

    @model_validator(mode="after")
    def _timeout_exceeds_interval(self) -> HeartbeatSpec:
        if self.timeout_s <= self.interval_s:
            raise ValueError(f"timeout_s ({self.timeout_s}) must be larger than interval_s ({self.interval_s})")
        return self


class HomomorphicEncryptionSpec(_Strict):
    """The CKKS context (TenSEAL) of jobs with `encryption: he`: made once per project and kept in the state folder;
    its public part goes into the server's kit, its secret key into each site's kit only (NVIDIA FLARE's HEBuilder,
    with its defaults)."""

    poly_modulus_degree: Literal[4096, 8192, 16384, 32768] = Field(
        8192, description="Ring dimension N: a ciphertext holds N/2 values; larger is slower and more secure")
    coeff_mod_bit_sizes: list[Annotated[int, Field(ge=20, le=60)]] = Field(
        default_factory=lambda: [60, 40, 40], min_length=2, max_length=8,
        description="Bit sizes of the coefficient moduli; their sum bounds security (at most 218 bits for N 8192)")
    scale_bits: int = Field(40, ge=20, le=59, description="log2 of the CKKS scale: about the bits of precision kept")

    @model_validator(mode="after")
    def _secure_sum(self) -> HomomorphicEncryptionSpec:
        limit = {4096: 109, 8192: 218, 16384: 438, 32768: 881}[self.poly_modulus_degree]
        total = sum(self.coeff_mod_bit_sizes)
        if total > limit:
            raise ValueError(f"coeff_mod_bit_sizes sum to {total} bits, more than the {limit} that keep "
                             f"128-bit security with poly_modulus_degree {self.poly_modulus_degree}")
        if self.scale_bits >= self.coeff_mod_bit_sizes[0]:
            raise ValueError(f"scale_bits {self.scale_bits} must be below the first coefficient modulus's "
                             f"{self.coeff_mod_bit_sizes[0]} bits (it holds a value's integer part)")
        return self


class Project(_Strict):
    """A whole project.yml."""

    api_version: Literal[1] = Field(description="Schema version: 1 (NVIDIA FLARE's 3 is read by nvflare_project)")
    name: ProjectName = Field(description="Project name; also the workspace folder name")
    description: str = Field("", description="Free text")
    server: ServerSpec
    sites: list[SiteSpec] = Field(default_factory=list)
    relays: list[RelaySpec] = Field(
        default_factory=list, description="Relays between the server and some sites (a hierarchical federation)")
    admins: list[AdminSpec] = Field(default_factory=list)
    ca: CaSpec = Field(default_factory=CaSpec)
    certs: CertSpec = Field(default_factory=CertSpec)
    heartbeat: HeartbeatSpec = Field(default_factory=HeartbeatSpec)
    homomorphic_encryption: HomomorphicEncryptionSpec | None = Field(
        None, description="Give it (even empty: {}) to make a CKKS context for jobs with encryption: he")

    @model_validator(mode="after")
    def _wss_port_for_wss_sites(self) -> Project:
        on_wss = [s.name for s in self.sites if s.transport == "wss"]
        if on_wss and self.server.wss_port is None:
            raise ValueError(f"site {on_wss[0]} has transport: wss, but the server has no wss_port; give the server "
                             "a wss_port (e.g. 443) for WebSocket connections")
        if self.server.wss_port is not None and self.server.wss_port == self.server.port:
            raise ValueError(f"server.wss_port {self.server.wss_port} is the gRPC port too; give it a port of its own")
        return self

    def participants(self) -> list[Participant]:
        """Server first, then relays, then sites, then admins, in file order."""
        out = [Participant(self.server.name, "server", self.server.org, None, tuple(self.server.hosts))]
        out += [Participant(r.name, "relay", r.org, None, (r.address(), *r.hosts)) for r in self.relays]
        out += [Participant(s.name, "site", s.org, None, (), s.transport) for s in self.sites]
        out += [Participant(a.name, "admin", a.org, a.role, ()) for a in self.admins]
        return out


@dataclass(frozen=True)
class Participant:
    """One identity to issue a certificate and a kit for."""

    name: str
    kind: Kind
    org: str
    role: Role | None
    hosts: tuple[str, ...]
    transport: Transport = "grpc"

    def san_hosts(self) -> tuple[str, ...]:
        """Names a server's or a relay's certificate must cover: its own name first, then its hosts."""
        if self.kind not in ("server", "relay"):
            return ()
        return tuple(dict.fromkeys((self.name, *self.hosts)))
