"""The kits of a provisioned project, read for containers: `flctl deploy docker|k8s` are made from these.

A PROJECT_WORKSPACE is a `prod_NN` folder, a project folder (its newest `prod_NN`), or a provisioning workspace
holding one project. Every server and site kit is verified against its signature and the server's CA first; the
admins' kits are never put in a container. Each participant gets a container name (flctl.cloud.k8s_names) and the
limits its site-owned `local/resources.yml` asks for. A problem raises DeployInputError naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from flctl.cloud.deploy_errors import DeployInputError
from flctl.cloud.k8s_names import container_names
from flctl.provisioner import kit_layout as layout
from flctl.provisioner.errors import KitError
from flctl.provisioner.kit_info import KitInfo, read_kit
from flctl.provisioner.signing import verify_kit

_PROD = re.compile(r"prod_(\d+)")
MIN_PORT = 1024  # the containers run as a user without CAP_NET_BIND_SERVICE


@dataclass(frozen=True)
class Limits:
    """What a node's `local/resources.yml` asks of its container: `cpus` (a number; auto: no limit set by the
    site), `memory_mb`, and `gpus` (how many: the length of its list)."""

    cpus: float | None = None
    memory_mb: int | None = None
    gpus: int = 0
    metrics_port: int = 0
    data_paths: tuple[str, ...] = ()  # folders the site's jobs read: bound read-only into its container


@dataclass(frozen=True)
class NodeKit:
    """One server or site kit: who, its container name, its files (startup/ and local/) and its limits."""

    participant: str
    kind: Literal["server", "site"]
    org: str
    name: str  # the container / Kubernetes name (flctl.cloud.k8s_names)
    path: Path
    startup: dict[str, bytes]
    local: dict[str, bytes]
    limits: Limits

    @property
    def files(self) -> dict[str, bytes]:
        """Every file, by its path in the kit (`startup/ca.crt`, `local/resources.yml`)."""
        return {**{f"{layout.STARTUP}/{n}": b for n, b in self.startup.items()},
                **{f"{layout.LOCAL}/{n}": b for n, b in self.local.items()}}


@dataclass(frozen=True)
class ProjectKits:
    """The server first, then the sites, in name order."""

    project: str
    prod: Path
    server_host: str
    port: int
    nodes: list[NodeKit] = field(default_factory=list)

    @property
    def server(self) -> NodeKit:
        return self.nodes[0]

    @property
    def sites(self) -> list[NodeKit]:
        return self.nodes[1:]


def find_prod(path: Path) -> Path:
    """The `prod_NN` folder `path` names: itself, a project's newest, or the newest of a workspace's one project."""
    if not path.is_dir():
        raise DeployInputError(f"[PROJECT_WORKSPACE] {path} is not a folder; give the provisioning workspace, "
                               "a project folder in it, or one of its prod_NN folders")
    if _PROD.fullmatch(path.name) or any((p / layout.STARTUP).is_dir() for p in path.iterdir()):
        return path
    prods = _prods(path)
    if not prods:
        projects = [p for p in path.iterdir() if p.is_dir() and _prods(p)]
        if len(projects) > 1:
            raise DeployInputError(f"[PROJECT_WORKSPACE] {path} holds several projects "
                                   f"({', '.join(sorted(p.name for p in projects))}); name one of them")
        prods = _prods(projects[0]) if projects else []
    if not prods:
        raise DeployInputError(f"[PROJECT_WORKSPACE] {path} holds no kits (no prod_NN folder); run "
                               "`flctl provision project.yml` first")
    return prods[-1]


def _prods(folder: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _PROD.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def load_project_kits(path: Path) -> ProjectKits:
    """Read and verify every server and site kit of the project at `path`; DeployInputError on any problem."""
    prod = find_prod(path)
    infos = [_info(p) for p in sorted(prod.iterdir()) if (p / layout.STARTUP).is_dir()]
    nodes = [i for i in infos if i.kind in ("server", "site")]
    servers = [i for i in nodes if i.kind == "server"]
    if len(servers) != 1:
        raise DeployInputError(f"[kits] {prod} holds {len(servers)} server kits; a federation needs exactly one "
                               "(provision the project again)")
    if len(nodes) < 2:
        raise DeployInputError(f"[kits] {prod} holds no site kit; add sites to project.yml and provision again")
    server = servers[0]
    ca = (layout.KitPaths.find(server.path).ca_cert).read_bytes()
    from cryptography import x509

    trusted = x509.load_pem_x509_certificate(ca)
    for info in nodes:
        report = verify_kit(info.path, trusted)
        if not report.ok:
            raise DeployInputError(f"[kits.{info.name}] the kit's signature does not verify: "
                                   f"{'; '.join(report.problems)}; provision it again, do not edit startup/")
    _check_port(server)
    ordered = [server, *sorted((i for i in nodes if i.kind == "site"), key=lambda i: i.name)]
    names = container_names([i.name for i in ordered])
    return ProjectKits(server.project, prod, server.server_host, server.server_port,
                       [_node(info, names[info.name]) for info in ordered])


def _info(path: Path) -> KitInfo:
    try:
        return read_kit(path)
    except KitError as exc:
        raise DeployInputError(f"[kits.{path.name}] {exc}") from None


def _check_port(server: KitInfo) -> None:
    if server.server_port < MIN_PORT:
        raise DeployInputError(f"[server.port] {server.server_port} is below {MIN_PORT}: the containers run as a "
                               f"user that may not bind it; set the server's port in project.yml to {MIN_PORT} "
                               "or more and provision again")


def _node(info: KitInfo, name: str) -> NodeKit:
    paths = layout.KitPaths.find(info.path)
    startup = {p.name: p.read_bytes() for p in sorted(paths.startup.iterdir()) if p.is_file()}
    local = {p.name: p.read_bytes() for p in sorted(paths.local.iterdir()) if p.is_file()} \
        if paths.local.is_dir() else {}
    limits = read_limits(local.get("resources.yml", b""), f"kits.{info.name}.local/resources.yml")
    if info.kind == "server" and limits.metrics_port == info.server_port:
        raise DeployInputError(f"[kits.{info.name}.local/resources.yml.metrics_port] {limits.metrics_port} is "
                               "also the federation port; choose another metrics_port")
    kind: Literal["server", "site"] = "server" if info.kind == "server" else "site"
    return NodeKit(info.name, kind, info.org, name, paths.root, startup, local, limits)


def read_limits(text: bytes, shown: str) -> Limits:
    """The container limits in a resources.yml's text (empty: none)."""
    try:
        doc: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DeployInputError(f"[{shown}] is not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise DeployInputError(f"[{shown}] must be a mapping of settings")
    cpus, memory, gpus, metrics = doc.get("cpus", "auto"), doc.get("memory_mb"), doc.get("gpus", []), \
        doc.get("metrics_port", 0)
    if cpus != "auto" and (isinstance(cpus, bool) or not isinstance(cpus, int | float) or cpus <= 0):
        raise DeployInputError(f"[{shown}.cpus] must be auto or a number of CPUs above 0, not {cpus!r}")
    memory = None if memory == "auto" else memory  # the machine's: no limit set
    if gpus == "auto":  # a site's own placement finds them; a container must be given them
        raise DeployInputError(f"[{shown}.gpus] auto cannot size a container's GPUs: list the GPUs it gets, "
                               "e.g. [0, 1]")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int) or memory < 64):
        raise DeployInputError(f"[{shown}.memory_mb] must be a whole number of MiB, 64 or more, not {memory!r}")
    if not isinstance(gpus, list):
        raise DeployInputError(f"[{shown}.gpus] must be a list of GPU ids, not {gpus!r}")
    if isinstance(metrics, bool) or not isinstance(metrics, int):
        raise DeployInputError(f"[{shown}.metrics_port] must be a port number, not {metrics!r}")
    data = doc.get("data_paths", [])
    if not isinstance(data, list) or not all(isinstance(p, str) and p.startswith("/") and ":" not in p
                                             for p in data):
        raise DeployInputError(f"[{shown}.data_paths] must be a list of absolute paths, not {data!r}")
    return Limits(None if cpus == "auto" else float(cpus), memory, len(gpus), metrics, tuple(data))
