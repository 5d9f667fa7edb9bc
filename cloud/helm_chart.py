"""The Helm chart of a federation: the objects of flctl.cloud.k8s_manifests, from the same values.

```
<chart>/Chart.yaml  values.yaml (no key in it)  templates/*.yaml (from flctl/cloud/helm_templates/)
        kits/<name>/startup.ca.crt ...           each participant's kit files, made into its Secret (mode 0600)
```
`helm install NAME CHART` renders the templates; `helm install` of a chart holding only some sites (the
`--sites` of `flctl deploy k8s`) runs those sites in another cluster, reaching the server at its public name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flctl.cloud.k8s_manifests import secret_key

TEMPLATES = Path(__file__).resolve().parent / "helm_templates"
CHART_VERSION = "0.1.0"


def chart_files(values: dict[str, Any], files: dict[str, dict[str, bytes]], app_version: str) -> dict[str, bytes]:
    """Every file of the chart (relative path -> bytes); `files` maps each participant's name to its kit files."""
    chart = {"apiVersion": "v2", "name": f"flctl-{values['server']['name']}", "type": "application",
             "version": CHART_VERSION, "appVersion": app_version,
             "description": f"The flctl federation of project {values['project']}: server and sites from their kits"}
    out = {"Chart.yaml": yaml.safe_dump(chart, sort_keys=False).encode(),
           "values.yaml": yaml.safe_dump(values, sort_keys=False).encode(),
           ".helmignore": b"*.orig\n*.tmp\n"}
    for template in sorted(TEMPLATES.iterdir()):
        out[f"templates/{template.name}"] = template.read_bytes()
    for name, kit in files.items():
        for path, data in kit.items():
            out[f"kits/{name}/{secret_key(path)}"] = data
    return out


def secret_paths(chart: dict[str, bytes]) -> set[str]:
    return {path for path in chart if path.startswith("kits/")}
