"""`flctl deploy k8s --apply`: the manifests made real through the `kubernetes` client, and undone by destroy.

Idempotent: each object is created, or patched when it exists (409). The namespace is created when missing.
Everything created or patched is recorded at once in the deployment state (`DIR.deploy/state.json`,
flctl.cloud.deploy_state, as the clouds record theirs; a namespace only when flctl created it), so
`flctl deploy destroy DIR` deletes exactly that, dependents first, each forgotten the moment it is gone.
The user's kubeconfig (or `--kubeconfig`, `--context`) says which cluster; credentials are never written.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flctl.cloud.deploy_errors import CloudCredentialsMissing, CloudUnreachable, DeployError, DeployInputError
from flctl.cloud.deploy_state import DeploymentState, Record
from flctl.cloud.k8s_manifests import Manifest

PROVIDER = "k8s"
APIS: dict[str, tuple[str, str]] = {
    "Secret": ("CoreV1Api", "namespaced_secret"),
    "PersistentVolumeClaim": ("CoreV1Api", "namespaced_persistent_volume_claim"),
    "Service": ("CoreV1Api", "namespaced_service"),
    "Deployment": ("AppsV1Api", "namespaced_deployment"),
    "NetworkPolicy": ("NetworkingV1Api", "namespaced_network_policy"),
}
RAW = {"_preload_content": False}
"""Answers are not parsed into the client's models: flctl needs only the status code (a 4xx raises), and a
server's body for a delete differs by kind and version."""
DELETE_ORDER = ("Deployment", "Service", "NetworkPolicy", "PersistentVolumeClaim", "Secret", "Namespace")


def state_folder(out: Path) -> Path:
    """Where the deployment of the bundle `out` is recorded: `out.deploy/` beside it (kept when `out` is
    written again)."""
    return out.with_name(out.name + ".deploy")


@dataclass(frozen=True)
class Cluster:
    """Which cluster: a kubeconfig file and context (None: the user's default)."""

    kubeconfig: Path | None = None
    context: str | None = None

    def client(self) -> Any:
        """An ApiClient for the cluster; DeployInputError naming the kubeconfig when it cannot be loaded."""
        from kubernetes.config.config_exception import ConfigException

        config: Any = importlib.import_module("kubernetes.config")
        try:
            return config.new_client_from_config(config_file=str(self.kubeconfig) if self.kubeconfig else None,
                                                 context=self.context)
        except (ConfigException, OSError, yaml.YAMLError, TypeError, ValueError, KeyError) as exc:
            raise DeployInputError(f"[--kubeconfig] cannot load the kubeconfig ({exc}); pass --kubeconfig PATH "
                                   "and --context NAME") from None


def _call(what: str, action: Callable[[], Any]) -> Any:
    """Run one API call; the client's failures become DeployErrors (409 and 404 are returned, as their code)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return action()
    except ApiException as exc:
        if exc.status in (404, 409):
            return exc.status
        if exc.status in (401, 403):
            raise CloudCredentialsMissing(f"the cluster refused {what} ({exc.status} {exc.reason}); check the "
                                          "kubeconfig's user and its rights in the namespace") from None
        raise DeployError(f"{what} failed: {exc.status} {exc.reason}: {str(exc.body)[:300]}") from None
    except HTTPError as exc:
        raise CloudUnreachable(f"cannot reach the cluster for {what} ({exc}); check the kubeconfig's server "
                               "and your network") from None


def apply_objects(objects: list[Manifest], api: Any, state: DeploymentState, location: str) -> list[
        tuple[str, str, str]]:
    """Create or patch each object in order; (kind, name, 'created' | 'updated') for each. The caller holds
    the state's lock."""
    client: Any = importlib.import_module("kubernetes.client")
    namespace = objects[0]["metadata"]["namespace"]
    done: list[tuple[str, str, str]] = []
    core = client.CoreV1Api(api)
    if _call(f"reading namespace {namespace}", functools.partial(core.read_namespace, namespace, **RAW)) == 404:
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {"app.kubernetes.io/managed-by": "flctl"}}}
        _call(f"creating namespace {namespace}", functools.partial(core.create_namespace, body, **RAW))
        state.add(Record(PROVIDER, "Namespace", namespace, namespace, "-", location))
        done.append(("Namespace", namespace, "created"))
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        group, suffix = APIS[kind]
        handle = getattr(client, group)(api)
        what = f"{kind} {namespace}/{name}"
        create = getattr(handle, f"create_{suffix}")
        created = _call(f"creating {what}", functools.partial(create, namespace, obj, **RAW))
        how = "created"
        if created == 409:
            patch = getattr(handle, f"patch_{suffix}")
            _call(f"patching {what}", functools.partial(patch, name, namespace, obj, **RAW))
            how = "updated"
        participant = obj["metadata"].get("labels", {}).get("flctl.dev/participant", "-")
        state.add(Record(PROVIDER, kind, f"{namespace}/{name}", name, participant, location))
        done.append((kind, name, how))
    return done


def destroy_records(api: Any, state: DeploymentState) -> list[tuple[Record, str]]:
    """Delete every k8s object `state` recorded, dependents first; (record, 'deleted' | 'already gone')."""
    client: Any = importlib.import_module("kubernetes.client")
    records = sorted((r for r in state.records if r.provider == PROVIDER), key=lambda r: DELETE_ORDER.index(r.kind))
    out: list[tuple[Record, str]] = []
    for record in records:
        what = f"deleting {record.kind} {record.id}"
        if record.kind == "Namespace":
            gone = _call(what, functools.partial(client.CoreV1Api(api).delete_namespace, record.name, **RAW))
        else:
            group, suffix = APIS[record.kind]
            handle = getattr(client, group)(api)
            gone = _call(what, functools.partial(getattr(handle, f"delete_{suffix}"), record.name,
                                                 record.id.split("/", 1)[0], **RAW))
        state.forget(record)
        out.append((record, "already gone" if gone == 404 else "deleted"))
    return out
