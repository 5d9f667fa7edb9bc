"""The schema of a kit's `node.yml` (server, site) and `console.yml` (admin).

The provisioner writes these files and `node` and `console` read them, so the
models here are the contract; unknown keys are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flctl.provisioner.participant_kinds import Role


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Strict):
    host: str = Field(description="Host name or IP address")
    port: int = Field(ge=1, le=65535)


class Heartbeat(_Strict):
    interval_s: float = Field(gt=0, description="Seconds between a site's heartbeats")
    timeout_s: float = Field(gt=0, description="Silence after which the server marks a site offline")


class TlsFiles(_Strict):
    """File names inside `startup/`."""

    ca: str
    cert: str
    key: str


class NodeConfig(_Strict):
    """`startup/node.yml` of a server or a site."""

    api_version: Literal[1]
    project: str
    name: str
    kind: Literal["server", "site", "relay"]
    org: str
    server: Endpoint = Field(description="Where sites connect (a site's or a relay's parent: the server or a relay)")
    listen: Endpoint | None = Field(None, description="Server and relay only: address and port to bind")
    heartbeat: Heartbeat
    tls: TlsFiles
    failover: Endpoint | None = Field(
        None, description="Site under a relay only: where it connects while its relay is down (the server)")
    parents: dict[str, str] | None = Field(
        None, description="Server and relay only: each relay and site under a relay, to that relay's name")
    transport: Literal["grpc", "wss"] | None = Field(
        None, description="Site only: wss (the same gRPC inside a WebSocket on HTTPS to wss_port); none: grpc")
    wss_port: int | None = Field(
        None, ge=1, le=65535, description="The server's WebSocket-over-HTTPS port (the server listens there too)")


class ConsoleConfig(_Strict):
    """`startup/console.yml` of an admin."""

    api_version: Literal[1]
    project: str
    name: str
    kind: Literal["admin"]
    org: str
    role: Role
    server: Endpoint
    tls: TlsFiles
