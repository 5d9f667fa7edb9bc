"""Render the files of one startup kit in memory (pure: no disk access).

The result maps a path inside the kit (`startup/node.yml`) to its bytes and file
mode, so the same bytes are digested, signed, written and zipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from provisioner import kit_layout as layout
from provisioner.kit_config import ConsoleConfig, Endpoint, Heartbeat, NodeConfig, TlsFiles
from provisioner.project import Participant, Project

LISTEN_ALL = "0.0.0.0"
# libyaml's emitter when available: the same output as the pure-Python one, four times faster.
_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class KitFile:
    data: bytes
    mode: int


def config_for(project: Project, who: Participant) -> NodeConfig | ConsoleConfig:
    server = Endpoint(host=project.server.name, port=project.server.port)
    tls = TlsFiles(ca=layout.CA_CERT, cert=layout.cert_name(who.kind), key=layout.key_name(who.kind))
    if who.kind == "admin":
        assert who.role is not None
        return ConsoleConfig(api_version=1, project=project.name, name=who.name, kind="admin", org=who.org,
                             role=who.role, server=server, tls=tls)
    hb = Heartbeat(interval_s=project.heartbeat.interval_s, timeout_s=project.heartbeat.timeout_s)
    listen = Endpoint(host=LISTEN_ALL, port=project.server.port) if who.kind == "server" else None
    return NodeConfig(api_version=1, project=project.name, name=who.name, kind=who.kind, org=who.org,
                      server=server, listen=listen, heartbeat=hb, tls=tls)


_CONFIG_HEADER = "# Written by `flctl provision` and covered by signature.json: do not edit.\n"

_START = """#!/usr/bin/env bash
# Start this flctl {kind} in the foreground from its kit; extra arguments go to `flctl node start`.
set -euo pipefail
KIT="$(cd "$(dirname "${{BASH_SOURCE[0]}}")/.." && pwd)"
exec "${{FLCTL:-flctl}}" node start "$KIT" "$@"
"""

_STOP = """#!/usr/bin/env bash
# Stop the flctl {kind} that was started from this kit.
set -euo pipefail
KIT="$(cd "$(dirname "${{BASH_SOURCE[0]}}")/.." && pwd)"
exec "${{FLCTL:-flctl}}" node stop "$KIT" "$@"
"""

_POLICY = """\
# Who may do what on this {kind}. Owned by the site: flctl writes it once and never overwrites it.
# Rights: submit_job, manage_job, download_job, view, operate.
# Conditions: any, own_org (jobs of the admin's organisation), own (the admin's own jobs),
# own_org_site (only when this {kind} belongs to the admin's organisation), none.
api_version: 1
roles:
  project_admin: {{submit_job: any, manage_job: any, download_job: any, view: any, operate: any}}
  org_admin: {{submit_job: none, manage_job: own_org, download_job: own_org, view: any, operate: own_org_site}}
  lead: {{submit_job: any, manage_job: own, download_job: own, view: any, operate: own_org_site}}
  member: {{submit_job: none, manage_job: none, download_job: none, view: any, operate: none}}
jobs:
  # Admins (by name) or organisations (as org:NAME) whose signed jobs may run here; 'any' allows all.
  allowed_signers: any
"""

_PRIVACY = """\
# Privacy filters applied to what leaves this {kind}, by scope. Owned by the site.
api_version: 1
default_scope: public
scopes:
  public: []
"""

_RESOURCES = """\
# What this {kind} offers to jobs. Owned by the site.
api_version: 1
max_concurrent_jobs: 2
cpus: auto
gpus: []
"""


def render_kit(project: Project, who: Participant, ca_pem: bytes, cert_pem: bytes,
               key_pem: bytes | None) -> dict[str, KitFile]:
    """All files of `who`'s kit except `startup/signature.json`; `key_pem=None` for a CSR kit."""
    startup = layout.STARTUP
    config = config_for(project, who)
    body = yaml.dump(config.model_dump(mode="json", exclude_none=True), Dumper=_DUMPER, sort_keys=False)
    files = {
        f"{startup}/{layout.CA_CERT}": KitFile(ca_pem, 0o644),
        f"{startup}/{layout.cert_name(who.kind)}": KitFile(cert_pem, 0o644),
        f"{startup}/{layout.config_name(who.kind)}": KitFile((_CONFIG_HEADER + body).encode(), 0o644),
    }
    if key_pem is not None:
        files[f"{startup}/{layout.key_name(who.kind)}"] = KitFile(key_pem, 0o600)
    if who.kind != "admin":
        files[f"{startup}/{layout.START_SCRIPT}"] = KitFile(_START.format(kind=who.kind).encode(), 0o755)
        files[f"{startup}/{layout.STOP_SCRIPT}"] = KitFile(_STOP.format(kind=who.kind).encode(), 0o755)
        for name, text in zip(layout.LOCAL_FILES, (_POLICY, _PRIVACY, _RESOURCES), strict=True):
            files[f"{layout.LOCAL}/{name}"] = KitFile(text.format(kind=who.kind).encode(), 0o644)
    return files
