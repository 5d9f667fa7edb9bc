"""`flctl deploy k8s`'s output folder, from a project's kits: the manifests and the Helm chart, same content.

```
DIR/  kubernetes.yaml      every object, Secrets first (mode 0600: it holds the kits' keys)
      chart/               the Helm chart (flctl.cloud.helm_chart), its kits/ mode 0600
      values.json          the values both were made from (no key)
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flctl.cloud.deploy_output import write_tree
from flctl.cloud.helm_chart import chart_files, secret_paths
from flctl.cloud.k8s_manifests import Manifest, chart_values, manifests
from flctl.cloud.project_kits import ProjectKits

MANIFESTS = "kubernetes.yaml"


@dataclass(frozen=True)
class K8sOptions:
    namespace: str = "flctl"
    image: str = "flctl:latest"
    storage_class: str | None = None
    service_type: str = "ClusterIP"
    node_port: int | None = None
    workspace_size: str = "10Gi"
    only_sites: list[str] | None = None  # a bundle of these sites alone, for another cluster
    data_claims: dict[str, str] | None = None  # site -> the claim mounted read-only at its data_paths


def bundle(kits: ProjectKits, options: K8sOptions) -> tuple[dict[str, Any], list[Manifest]]:
    """(the values, the manifests) of the federation; DeployInputError names a bad option."""
    values = chart_values(kits, options.namespace, options.image, options.storage_class, options.service_type,
                          options.node_port, options.workspace_size, options.only_sites, options.data_claims)
    return values, manifests(values, _files(kits, values))


def _files(kits: ProjectKits, values: dict[str, Any]) -> dict[str, dict[str, bytes]]:
    """The kit files of the participants in the bundle (a sites-only bundle carries no server key)."""
    names = {values["server"]["name"]} if values["server"]["deploy"] else set()
    names |= {site["name"] for site in values["sites"]}
    return {kit.name: kit.files for kit in kits.nodes if kit.name in names}


def write_bundle(kits: ProjectKits, options: K8sOptions, out: Path, app_version: str, force: bool = False) -> tuple[
        dict[str, Any], list[Manifest]]:
    """Write DIR (all of it, or nothing); returns what `bundle` returns."""
    values, objects = bundle(kits, options)
    chart = chart_files(values, _files(kits, values), app_version)
    files = {MANIFESTS: yaml.safe_dump_all(objects, sort_keys=False).encode(),
             "values.json": (json.dumps(values, indent=2) + "\n").encode(),
             **{f"chart/{path}": data for path, data in chart.items()}}
    write_tree(out, files, {MANIFESTS, *(f"chart/{p}" for p in secret_paths(chart))}, replace=force)
    return values, objects
