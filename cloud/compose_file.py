"""A Compose file for a federation, as a pure function: the project's kits in, the compose dict and `.env` out.

One service per participant (the server and every site), named by flctl.cloud.k8s_names's mapping:
- the kit bind-mounted read-only at /kit from the prod folder (`${FLCTL_KITS}`): never copied into an image;
- the workspace a named volume at /workspace; /tmp a tmpfs; the root filesystem read-only; each of the site's
  `data_paths` (its resources.yml) bound read-only at the same path, so its jobs read their data as on a host;
- the federation port published on the server only, on `${FLCTL_BIND}` (0.0.0.0, or 127.0.0.1 to keep it on
  this machine); the server answers on its network under the name the kits give it, so sites reach it there;
- `restart: unless-stopped`, no capabilities, no-new-privileges, the user `${FLCTL_UID}` (the kits' owner, who
  can read them), limits from each kit's `local/resources.yml`, a health check (`flctl node health`).
Run it with `docker compose up -d` or `podman compose up -d` (podman-compose) in the output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flctl.cloud.k8s_manifests import KIT_DIR, WORKSPACE_DIR, server_service
from flctl.cloud.project_kits import NodeKit, ProjectKits

DEFAULT_UID = 10001
NETWORK = "federation"


def compose(kits: ProjectKits) -> dict[str, Any]:
    """The compose file's contents (every machine-specific value is a `${VARIABLE}` of `.env`)."""
    server_service(kits.server_host, "", kits.server.name)  # refuses a server named localhost
    services = {kit.name: _service(kits, kit) for kit in kits.nodes}
    return {"name": "${COMPOSE_PROJECT_NAME}", "services": services, "networks": {NETWORK: {}},
            "volumes": {f"{kit.name}-workspace": {} for kit in kits.nodes}}


def _service(kits: ProjectKits, kit: NodeKit) -> dict[str, Any]:
    health = ["CMD", "flctl", "node", "health", KIT_DIR, "--workspace", WORKSPACE_DIR]
    service: dict[str, Any] = {
        "image": "${FLCTL_IMAGE}",
        "command": ["node", "start", KIT_DIR, "--workspace", WORKSPACE_DIR],
        "user": "${FLCTL_UID}:${FLCTL_GID}",
        "read_only": True,
        "tmpfs": ["/tmp"],
        "environment": {"HOME": WORKSPACE_DIR, "TMPDIR": "/tmp"},
        "volumes": [{"type": "bind", "source": f"${{FLCTL_KITS}}/{kit.participant}", "target": KIT_DIR,
                     "read_only": True},
                    {"type": "volume", "source": f"{kit.name}-workspace", "target": WORKSPACE_DIR},
                    *({"type": "bind", "source": path, "target": path, "read_only": True}
                      for path in kit.limits.data_paths)],
        "restart": "unless-stopped",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "healthcheck": {"test": health, "interval": "15s", "timeout": "10s", "retries": 3, "start_period": "30s"},
        "labels": {"flctl.dev/project": kits.project, "flctl.dev/participant": kit.participant},
        "networks": {NETWORK: {"aliases": [kits.server_host]} if kit.kind == "server" else {}},
    }
    limits: dict[str, Any] = {}
    if kit.limits.cpus is not None:
        limits["cpus"] = f"{kit.limits.cpus:g}"
    if kit.limits.memory_mb is not None:
        limits["memory"] = f"{kit.limits.memory_mb}M"
    resources: dict[str, Any] = {"limits": limits} if limits else {}
    if kit.limits.gpus:
        resources["reservations"] = {"devices": [{"driver": "nvidia", "count": kit.limits.gpus,
                                                  "capabilities": ["gpu"]}]}
    if resources:
        service["deploy"] = {"resources": resources}
    if kit.kind == "server":
        service["ports"] = [f"${{FLCTL_BIND}}:${{FLCTL_PORT}}:{kits.port}"]
    else:
        service["depends_on"] = {kits.server.name: {"condition": "service_started"}}
    return service


def env_file(kits: ProjectKits, image: str, bind: str = "0.0.0.0", uid: int | None = None,
             gid: int | None = None) -> str:
    """The `.env` beside the compose file: the values that differ between machines."""
    owner = kits.prod.stat()
    uid = uid if uid is not None else (owner.st_uid or DEFAULT_UID)
    gid = gid if gid is not None else (owner.st_gid or DEFAULT_UID)
    lines = {
        "COMPOSE_PROJECT_NAME": "flctl-" + kits.project.lower().replace("_", "-"),
        "FLCTL_IMAGE": image,
        "FLCTL_KITS": str(Path(kits.prod).resolve()),
        "FLCTL_BIND": bind,
        "FLCTL_PORT": str(kits.port),
        "FLCTL_UID": str(uid),
        "FLCTL_GID": str(gid),
    }
    return "# Written by `flctl deploy docker`: the values of this machine; the kits are mounted from FLCTL_KITS.\n" \
        + "".join(f"{key}={value}\n" for key, value in lines.items())
