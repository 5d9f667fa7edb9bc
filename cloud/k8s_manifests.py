"""Kubernetes manifests for a federation, as pure functions: the project's kits in, manifest dicts out.

`chart_values` turns the kits and the command's options into the values (the Helm chart's values.yaml: no key
in it); `manifests` turns values plus the kits' files into the objects, in the order they are applied:

- per participant, a Secret `NAME-kit` holding its kit (startup/ and local/; never a ConfigMap), mounted file by
  file with subPath, so the node sees plain files (a Secret volume's own files are symbolic links, which a kit's
  signature check refuses);
- the server: a PersistentVolumeClaim `NAME-workspace`, a Deployment (1 replica, Recreate: the claim is
  ReadWriteOnce), a Service on the federation port (ClusterIP, or LoadBalancer / NodePort for sites elsewhere);
- per site: a Deployment (its workspace an emptyDir: a site's state is its jobs' scratch);
- NetworkPolicies: the server admits only the federation port; the sites admit nothing and reach only the
  federation port and DNS;
- every container non-root (uid 10001), read-only root filesystem, no capabilities, RuntimeDefault seccomp,
  requests and limits from its kit's `local/resources.yml`, liveness and readiness probes (`flctl node health`).
"""

from __future__ import annotations

import base64
from typing import Any

from flctl.cloud.deploy_errors import DeployInputError
from flctl.cloud.k8s_names import is_label
from flctl.cloud.project_kits import Limits, NodeKit, ProjectKits

UID = 10001
KIT_DIR = "/kit"
WORKSPACE_DIR = "/workspace"
SERVICE_TYPES = ("ClusterIP", "LoadBalancer", "NodePort")
NODE_PORTS = (30000, 32767)
DEFAULT_LIMITS = {"cpu": "2", "memory": "4Gi"}
DEFAULT_REQUESTS = {"cpu": "250m", "memory": "512Mi"}
Manifest = dict[str, Any]


def secret_key(path: str) -> str:
    """A kit file's key in its Secret: `startup/ca.crt` is `startup.ca.crt` (a key may not hold '/')."""
    return path.replace("/", ".", 1)


def server_service(host: str, namespace: str, fallback: str) -> tuple[str, str]:
    """(the server's Service name, how sites reach it) from the host name in the kits.

    A one-label host (`fl-server`) names the Service, so pods of the namespace resolve it; `NAME.NS.svc[.cluster.
    local]` too, when NS is the namespace. Any other name is the server's public name: its Service is `fallback`,
    and that name must resolve (DNS) to the LoadBalancer's or a node's address, for the sites in this cluster too.
    """
    labels = host.rstrip(".").split(".")
    if host in ("localhost", "127.0.0.1", "::1"):
        raise DeployInputError(f"[server.name] '{host}' is each container's own loopback, so no site could reach "
                               "the server; name the server as sites reach it (e.g. fl-server, or its public "
                               "DNS name) in project.yml and provision again")
    if len(labels) == 1 and is_label(host):
        return host, "in-cluster"
    if len(labels) in (3, 5) and labels[2] == "svc" and is_label(labels[0]) and (
            len(labels) == 3 or labels[3:] == ["cluster", "local"]):
        if labels[1] != namespace:
            raise DeployInputError(f"[--namespace] the server's name {host} is in namespace '{labels[1]}', not "
                                   f"'{namespace}'; pass --namespace {labels[1]}")
        return labels[0], "in-cluster"
    return fallback, "public"


def chart_values(kits: ProjectKits, namespace: str = "flctl", image: str = "flctl:latest",
                 storage_class: str | None = None, service_type: str = "ClusterIP", node_port: int | None = None,
                 workspace_size: str = "10Gi", only_sites: list[str] | None = None,
                 data_claims: dict[str, str] | None = None) -> dict[str, Any]:
    """The chart's values: everything the manifests need except the kits' files (which hold keys).

    `only_sites`: a bundle of these sites alone, for a cluster other than the server's (no server objects);
    they reach the server at its public name, so a name that resolves only inside a cluster is refused.
    `data_claims`: site -> a PersistentVolumeClaim (made by the site) mounted read-only at its `data_paths`: the
    whole claim at a single path, else one folder of the claim (named as the path's last part) at each."""
    if not is_label(namespace):
        raise DeployInputError(f"[--namespace] '{namespace}' is not a Kubernetes namespace name (lower-case "
                               "letters, digits and '-', starting with a letter)")
    if service_type not in SERVICE_TYPES:
        raise DeployInputError(f"[--service-type] '{service_type}' is not one of {', '.join(SERVICE_TYPES)}")
    if node_port is not None and (service_type == "ClusterIP" or not NODE_PORTS[0] <= node_port <= NODE_PORTS[1]):
        raise DeployInputError(f"[--node-port] {node_port} needs --service-type NodePort or LoadBalancer and a "
                               f"port from {NODE_PORTS[0]} to {NODE_PORTS[1]}")
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    service, reach = server_service(kits.server_host, namespace, kits.server.name)
    sites = kits.sites
    if only_sites is not None:
        known = {site.participant: site for site in kits.sites}
        unknown = [name for name in only_sites if name not in known]
        if unknown:
            raise DeployInputError(f"[--site] {', '.join(unknown)}: not a site of the project (its sites: "
                                   f"{', '.join(known)})")
        if reach != "public":
            raise DeployInputError(f"[--site] the server's name {kits.server_host} resolves only inside its own "
                                   "cluster; sites in another cluster need its public name: provision the project "
                                   "with that name (server: name) and run the server with --service-type "
                                   "LoadBalancer or NodePort")
        sites = [known[name] for name in only_sites]
    claims = _data_claims(kits, data_claims or {})
    return {
        "project": kits.project,
        "namespace": namespace,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "port": kits.port,
        "serverHost": kits.server_host,
        "storageClass": storage_class or "",
        "workspaceSize": workspace_size,
        "server": {**_participant(kits.server), "service": service, "reach": reach, "serviceType": service_type,
                   "nodePort": node_port, "deploy": only_sites is None},
        "sites": [{**_participant(site), "dataClaim": claims.get(site.participant, "")} for site in sites],
    }


def _participant(kit: NodeKit) -> dict[str, Any]:
    return {"name": kit.name, "participant": kit.participant, "org": kit.org,
            "files": sorted(kit.files), "resources": resources(kit.limits), "dataPaths": list(kit.limits.data_paths)}


def _data_claims(kits: ProjectKits, claims: dict[str, str]) -> dict[str, str]:
    sites = {site.participant: site for site in kits.sites}
    for participant, claim in claims.items():
        site = sites.get(participant)
        if site is None:
            raise DeployInputError(f"[--data-claim] {participant}: not a site of the project (its sites: "
                                   f"{', '.join(sites)})")
        if not is_label(claim):
            raise DeployInputError(f"[--data-claim] {participant}={claim}: '{claim}' is not a claim's name")
        paths = site.limits.data_paths
        if not paths:
            raise DeployInputError(f"[--data-claim] {participant} lists no data_paths in its local/resources.yml, "
                                   "so the claim would be mounted nowhere; add the folders its jobs read there")
        if len(paths) > 1 and len({path.rstrip("/").rsplit("/", 1)[-1] for path in paths}) < len(paths):
            raise DeployInputError(f"[--data-claim] {participant}'s data_paths end in the same folder name; each "
                                   "is mounted from the claim's folder of that name, so give them distinct names")
    return claims


def resources(limits: Limits) -> dict[str, dict[str, str]]:
    """Requests and limits: the kit's cpus and memory_mb where set (requests never above them), else defaults."""
    cpu = f"{limits.cpus:g}" if limits.cpus is not None else DEFAULT_LIMITS["cpu"]
    memory = f"{limits.memory_mb}Mi" if limits.memory_mb is not None else DEFAULT_LIMITS["memory"]
    out = {"limits": {"cpu": cpu, "memory": memory},
           "requests": {"cpu": DEFAULT_REQUESTS["cpu"] if limits.cpus is None or limits.cpus >= 0.25 else cpu,
                        "memory": DEFAULT_REQUESTS["memory"] if limits.memory_mb is None or limits.memory_mb >= 512
                        else memory}}
    if limits.gpus:
        out["limits"]["nvidia.com/gpu"] = str(limits.gpus)
    return out


def manifests(values: dict[str, Any], files: dict[str, dict[str, bytes]]) -> list[Manifest]:
    """Every object of the federation; `files` maps each participant's name to its kit files (path -> bytes)."""
    server = values["server"]
    here = [server] if server["deploy"] else []  # a bundle of sites for another cluster holds no server object
    out: list[Manifest] = [_secret(values, p, files[p["name"]]) for p in [*here, *values["sites"]]]
    if here:
        out += [_claim(values), _deployment(values, server, "server"), _service(values)]
    out += [_deployment(values, site, "site") for site in values["sites"]]
    out += [_server_policy(values)] if here else []
    return [*out, _sites_policy(values)]


def _labels(values: dict[str, Any], name: str | None = None, component: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "flctl", "app.kubernetes.io/instance": _instance(values),
              "app.kubernetes.io/managed-by": "flctl"}
    if component:
        labels["app.kubernetes.io/component"] = component
    if name:
        labels["flctl.dev/participant"] = name
    return labels


def _instance(values: dict[str, Any]) -> str:
    return str(values["project"]).lower().replace("_", "-")[:63].strip("-") or "flctl"


def _meta(values: dict[str, Any], name: str, who: dict[str, Any] | None = None,
          component: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": values["namespace"],
                            "labels": _labels(values, who["name"] if who else None, component)}
    if who:
        meta["annotations"] = {"flctl.dev/participant-name": who["participant"], "flctl.dev/org": who["org"]}
    return meta


def _secret(values: dict[str, Any], who: dict[str, Any], kit_files: dict[str, bytes]) -> Manifest:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(values, f"{who['name']}-kit", who),
            "data": {secret_key(path): base64.b64encode(data).decode() for path, data in sorted(kit_files.items())}}


def _claim(values: dict[str, Any]) -> Manifest:
    server = values["server"]
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": values["workspaceSize"]}}}
    if values["storageClass"]:
        spec["storageClassName"] = values["storageClass"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(values, f"{server['name']}-workspace", server, "server"), "spec": spec}


def _probe(command: list[str], period: int, failures: int) -> dict[str, Any]:
    return {"exec": {"command": command}, "periodSeconds": period, "timeoutSeconds": 10,
            "failureThreshold": failures}


def _container(values: dict[str, Any], who: dict[str, Any], kind: str) -> dict[str, Any]:
    health = ["flctl", "node", "health", KIT_DIR, "--workspace", WORKSPACE_DIR]
    container: dict[str, Any] = {
        "name": kind,
        "image": f"{values['image']['repository']}:{values['image']['tag']}",
        "imagePullPolicy": values["image"]["pullPolicy"],
        "args": ["node", "start", KIT_DIR, "--workspace", WORKSPACE_DIR],
        "env": [{"name": "HOME", "value": WORKSPACE_DIR}, {"name": "TMPDIR", "value": "/tmp"}],
        "resources": who["resources"],
        "volumeMounts": [{"name": "kit", "mountPath": f"{KIT_DIR}/{path}", "subPath": secret_key(path),
                          "readOnly": True} for path in who["files"]]
        + [{"name": "workspace", "mountPath": WORKSPACE_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
        + _data_mounts(who),
        "livenessProbe": _probe([*health, "--live"], 20, 3),
        "readinessProbe": _probe(health, 10, 3),
        "startupProbe": _probe([*health, "--live"], 5, 24),
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if kind == "server":
        container["ports"] = [{"name": "federation", "containerPort": values["port"], "protocol": "TCP"}]
        container["livenessProbe"] = {"tcpSocket": {"port": "federation"}, "periodSeconds": 20,
                                      "failureThreshold": 3}
    return container


def _data_mounts(who: dict[str, Any]) -> list[dict[str, Any]]:
    if not who.get("dataClaim"):
        return []
    paths: list[str] = who["dataPaths"]
    return [{"name": "data", "mountPath": path, "readOnly": True}
            | ({} if len(paths) == 1 else {"subPath": path.rstrip("/").rsplit("/", 1)[-1]}) for path in paths]


def _deployment(values: dict[str, Any], who: dict[str, Any], kind: str) -> Manifest:
    claim = {"claimName": f"{who['name']}-workspace"}
    workspace: dict[str, Any] = {"name": "workspace", "persistentVolumeClaim": claim} if kind == "server" \
        else {"name": "workspace", "emptyDir": {}}
    selector = {"app.kubernetes.io/instance": _instance(values), "flctl.dev/participant": who["name"]}
    pod = {"metadata": {"labels": _labels(values, who["name"], kind)},
           "spec": {"automountServiceAccountToken": False, "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [_container(values, who, kind)],
                    "volumes": [{"name": "kit", "secret": {"secretName": f"{who['name']}-kit", "defaultMode": 0o440}},
                                workspace, {"name": "tmp", "emptyDir": {}}]
                    + ([{"name": "data", "persistentVolumeClaim": {"claimName": who["dataClaim"], "readOnly": True}}]
                       if who.get("dataClaim") else [])}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(values, who["name"], who, kind),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": selector},
                     "template": pod}}


def _service(values: dict[str, Any]) -> Manifest:
    server = values["server"]
    port: dict[str, Any] = {"name": "federation", "port": values["port"], "targetPort": "federation",
                            "protocol": "TCP"}
    if server["nodePort"] is not None:
        port["nodePort"] = server["nodePort"]
    meta = _meta(values, server["service"], server, "server")
    meta["annotations"]["flctl.dev/server-host"] = values["serverHost"]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": server["serviceType"], "ports": [port],
                     "selector": {"app.kubernetes.io/instance": _instance(values),
                                  "flctl.dev/participant": server["name"]}}}


def _server_policy(values: dict[str, Any]) -> Manifest:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(values, f"{_instance(values)}-server-federation-only", None, "server"),
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": _instance(values),
                                                     "app.kubernetes.io/component": "server"}},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"protocol": "TCP", "port": values["port"]}]}]}}


def _sites_policy(values: dict[str, Any]) -> Manifest:
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(values, f"{_instance(values)}-sites-federation-only", None, "site"),
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": _instance(values),
                                                     "app.kubernetes.io/component": "site"}},
                     "policyTypes": ["Ingress", "Egress"], "ingress": [],
                     "egress": [{"ports": [{"protocol": "TCP", "port": values["port"]}]}, {"ports": dns}]}}
