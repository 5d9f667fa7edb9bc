"""Render the files of one startup kit in memory (pure: no disk access).

The result maps a path inside the kit (`startup/node.yml`) to its bytes and file
mode, so the same bytes are digested, signed, written and zipped.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import yaml

from flctl.provisioner import kit_layout as layout
from flctl.provisioner import relay_tree
from flctl.provisioner.kit_config import ConsoleConfig, Endpoint, Heartbeat, NodeConfig, TlsFiles
from flctl.provisioner.project import Kind, Participant, Project

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
    parents = relay_tree.parent_map(project)
    relays = {r.name: r for r in project.relays}
    if who.name in parents:  # under a relay: that relay is its server
        parent = relays[parents[who.name]]
        server = Endpoint(host=parent.address(), port=parent.port)
    if who.kind == "relay":
        listen = Endpoint(host=LISTEN_ALL, port=relays[who.name].port)
    tree = (parents or None) if who.kind in ("server", "relay") else None
    failover = Endpoint(host=project.server.name, port=project.server.port) \
        if who.name in parents and who.name in {s.name for s in project.sites if s.failover} else None
    # Neither key in the kits of a gRPC-only project: their node.yml stays as it was.
    transport = who.transport if who.transport != "grpc" else None
    return NodeConfig(api_version=1, project=project.name, name=who.name, kind=who.kind, org=who.org,
                      server=server, listen=listen, heartbeat=hb, tls=tls, parents=tree, failover=failover,
                      transport=transport,
                      wss_port=project.server.wss_port)


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
# A job asks for a scope with privacy_scope in its job.yml (else it gets default_scope); a site without that scope
# refuses the job. A scope lists filters, applied in order in this site's own process (a job's script cannot skip
# them). Each entry:
#   filter: exclude_vars   which filter: exclude_vars (removes tensors by name or by regular expression), or one of
#                          differential privacy on results (percentile_privacy, svt_privacy, gaussian_dp; the
#                          README's Privacy section says what each does, and does not, protect)
#   args: ...              its arguments (exclude_vars: a list of exact names, or one regular expression;
#                          gaussian_dp: {{clip_norm: 1.0, noise_multiplier: 1.1, delta: 1.0e-5, max_epsilon: 10}})
#   apply_to: result       what passes through it: result (what this site sends out; the default), task (what
#                          the job's script is given) or both
# For example, a scope that never sends the tensors whose names start with "secret." nor the layer "head.bias":
#  private:
#    - filter: exclude_vars
#      args:
#        exclude_vars: '^secret\\.'
#    - filter: exclude_vars
#      args:
#        exclude_vars: [head.bias]
api_version: 1
default_scope: public
scopes:
  public: []
"""

_RESOURCES = """\
# What this {kind} offers to jobs. Owned by the site.
api_version: 1
max_concurrent_jobs: 2
# What a site offers jobs (a job asks in its job.yml resources: cpus, memory_mb, gpus, gpu_memory_gb). For
# cpus, auto (the cores it may run on) or a number; for gpus, auto (every GPU nvidia-smi finds), a list of indices
# ([0, 1]) or [] (none: jobs are not given GPUs, CUDA_VISIBLE_DEVICES is left alone).
cpus: auto
gpus: []
# memory_mb: 65536        # the memory it offers jobs (default: the machine's)
# gpu_memory_gb: 40       # each GPU's memory offered (default: what nvidia-smi says)
# gpu_sharing: false      # true: jobs share a GPU while the gpu_memory_gb they ask fits
# Flow-control window of each gRPC stream this {kind} receives on, in MiB (0: gRPC's adaptive window).
# Raise it on a long link: one stream moves at most this much per round trip.
stream_window_mb: 4
# The lowest TLS version the server accepts: "1.3" (the default), or "1.2" for a peer that cannot speak 1.3.
# tls_min_version: "1.3"
# The server's bounds on what one peer (a certificate) and everyone together may hold at once, and on how long a
# connection may take to finish its TLS handshake.
# max_calls_per_peer: 64
# max_streams_per_peer: 32
# max_calls: 4000
# max_streams: 3500
# handshake_timeout_s: 20
# A site's log lines (cut past max_log_line_chars) and metric values a job may take from it, each a minute.
# max_log_line_chars: 4096
# max_log_lines_per_minute: 1200
# max_metrics_per_minute: 1200
# Days an ended job is kept (its folder and records); 0 keeps them for ever.
# retention_days: 0
# A site's job scripts: confined by Landlock, or run as job_user where the site runs as root. required (the
# default) refuses every job where neither is possible; preferred runs them unconfined there, with a warning.
# job_isolation: required
# job_user: nobody
# Variables of this site's environment a job script may see, and folders it may read (absolute paths).
# job_env_allow: []
# data_paths: []
"""


class KitRenderer:
    """Renders the kits of one project: text shared by every kit of a kind is made once.

    A config file differs between participants of one kind only in its top-level `name`, `org` and
    `role` lines, so each kind's file is dumped by PyYAML once and those lines are filled in per
    participant; the bytes are the same as dumping each participant's config whole.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self._configs: dict[tuple[str, ...], list[str]] = {}
        self._parents = relay_tree.parent_map(project)
        self._failover = {s.name for s in project.sites if s.failover}
        self._static: dict[Kind, dict[str, KitFile]] = {}

    def render(self, who: Participant, ca_pem: bytes, cert_pem: bytes, key_pem: bytes | None
               ) -> dict[str, KitFile]:
        """All files of `who`'s kit except `startup/signature.json`; `key_pem=None` for a CSR kit."""
        startup = layout.STARTUP
        files = {
            f"{startup}/{layout.CA_CERT}": KitFile(ca_pem, 0o644),
            f"{startup}/{layout.cert_name(who.kind)}": KitFile(cert_pem, 0o644),
            f"{startup}/{layout.config_name(who.kind)}": KitFile(self.config(who), 0o644),
        }
        if key_pem is not None:
            files[f"{startup}/{layout.key_name(who.kind)}"] = KitFile(key_pem, 0o600)
        files.update(self._static_files(who.kind))
        return files

    def config(self, who: Participant) -> bytes:
        """The bytes of `who`'s node.yml or console.yml."""
        # A site on wss has a line more; sites of one relay share a config but for name and org; each relay's is
        # its own (its port, its parent).
        shape = (who.kind, who.transport, who.name if who.kind == "relay" else self._parents.get(who.name, ""),
                 str(who.name in self._failover))
        lines = self._configs.get(shape)
        if lines is None:
            lines = self._configs[shape] = dump_config(config_for(self.project, who)).splitlines(keepends=True)
        own = {"name": who.name, "org": who.org, "role": who.role}
        out = []
        for line in lines:
            key, sep, _ = line.partition(": ")
            value = own.get(key) if sep else None
            out.append(f"{key}: {yaml_scalar(value)}\n" if value is not None else line)
        return "".join(out).encode()

    def _static_files(self, kind: Kind) -> dict[str, KitFile]:
        files = self._static.get(kind)
        if files is None:
            files = self._static[kind] = {}
            if kind != "admin":
                startup = layout.STARTUP
                files[f"{startup}/{layout.START_SCRIPT}"] = KitFile(_START.format(kind=kind).encode(), 0o755)
                files[f"{startup}/{layout.STOP_SCRIPT}"] = KitFile(_STOP.format(kind=kind).encode(), 0o755)
                for name, text in zip(layout.LOCAL_FILES, (_POLICY, _PRIVACY, _RESOURCES), strict=True):
                    files[f"{layout.LOCAL}/{name}"] = KitFile(text.format(kind=kind).encode(), 0o644)
        return files


def dump_config(config: NodeConfig | ConsoleConfig) -> str:
    """A config file's text, header included."""
    body = yaml.dump(config.model_dump(mode="json", exclude_none=True), Dumper=_DUMPER, sort_keys=False)
    return _CONFIG_HEADER + body


# Letters, digits, '_' and '-', starting with a letter: plain in YAML unless the word means something else
# (true, No, null...), which the resolver says; anything else is left to PyYAML itself.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_RESOLVER = yaml.resolver.Resolver()
_STR = yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG


@functools.lru_cache(maxsize=4096)
def yaml_scalar(value: str) -> str:
    """`value` as PyYAML writes a string in a block mapping (plain when it can be, else quoted)."""
    if _PLAIN.fullmatch(value) and _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _STR:  # type: ignore[no-untyped-call]
        return value
    return yaml.dump({"k": value}, Dumper=_DUMPER)[len("k: "):-1]


def render_kit(project: Project, who: Participant, ca_pem: bytes, cert_pem: bytes,
               key_pem: bytes | None) -> dict[str, KitFile]:
    """All files of `who`'s kit except `startup/signature.json`; `key_pem=None` for a CSR kit."""
    return KitRenderer(project).render(who, ca_pem, cert_pem, key_pem)
