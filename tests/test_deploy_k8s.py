"""`flctl deploy k8s`: manifests and chart from real provisioned kits, validated against the Kubernetes schemas
offline (kubernetes-validate, Kubernetes 1.32), the Helm chart rendered by Helm's own engine to the same objects;
name mapping; bad input refused with exit 2, nothing written."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flctl.cloud.deploy_errors import DeployInputError
from flctl.cloud.k8s_manifests import manifests
from flctl.cloud.k8s_names import container_name, container_names
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml
from tests.federation import FLCTL

K8S_VERSION = "1.32"
PROJECT = """api_version: 1
name: fedk8s
server: {{name: {server}, org: hub, port: {port}, hosts: [127.0.0.1]}}
sites:
  - {{name: Site_1, org: org_1}}
  - {{name: site-b, org: org_2}}
admins:
  - {{name: admin@hub.org, org: hub, role: project_admin}}
"""


def make_workspace(root: Path, server: str = "fl-server", port: int = 8443) -> Path:
    text = PROJECT.format(server=server, port=port)
    provision(project_from_document(parse_yaml(text, "project.yml")).project, root / "ws")
    return root / "ws"


def flctl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("k8s")
    ws = make_workspace(root)
    site = ws / "fedk8s" / "prod_00" / "site-b" / "local" / "resources.yml"
    site.write_text(site.read_text().replace("cpus: auto", "cpus: 1.5") + "memory_mb: 2048\n"
                    "data_paths: [/data/scans, /data/labels/]\n")
    done = flctl("deploy", "k8s", ws, "-o", root / "out", "--namespace", "fl", "--storage-class", "fast",
                 "--data-claim", "site-b=b-data", "--json")
    assert done.returncode == 0, done.stderr
    return ws, root / "out"


def objects(out: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((out / "kubernetes.yaml").read_text()))


def test_every_manifest_validates_against_the_kubernetes_schemas(generated: tuple[Path, Path]) -> None:
    """Each object is valid for Kubernetes 1.32, strictly (no unknown field)."""
    kv = pytest.importorskip("kubernetes_validate", reason="needs the k8s extra: bash scripts/setup.sh --all")
    found = objects(generated[1])
    kinds = sorted(o["kind"] for o in found)
    assert kinds == ["Deployment"] * 3 + ["NetworkPolicy"] * 2 + ["PersistentVolumeClaim"] + ["Secret"] * 3 + \
        ["Service"]
    for obj in found:
        kv.validate(obj, K8S_VERSION, strict=True)


def test_each_kit_is_a_secret_mounted_file_by_file_and_never_a_configmap(generated: tuple[Path, Path]) -> None:
    """The Secret holds exactly the kit's files; the pod mounts each with subPath, read-only."""
    ws, out = generated
    found = objects(out)
    assert not [o for o in found if o["kind"] == "ConfigMap"]
    secret = next(o for o in found if o["kind"] == "Secret" and o["metadata"]["name"] == "site-1-kit")
    kit = ws / "fedk8s" / "prod_00" / "Site_1"
    expected = {f"{p.parent.name}.{p.name}": p.read_bytes() for p in kit.glob("*/*") if p.is_file()}
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == expected
    pod = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "site-1")["spec"][
        "template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/kit/startup/site.key"] == {"name": "kit", "mountPath": "/kit/startup/site.key",
                                               "subPath": "startup.site.key", "readOnly": True}
    assert (out / "kubernetes.yaml").stat().st_mode & 0o077 == 0
    for public in ("values.json", "chart/values.yaml", "chart/Chart.yaml"):
        assert b"PRIVATE KEY" not in (out / public).read_bytes()


def test_containers_are_non_root_read_only_with_probes_and_the_kits_limits(generated: tuple[Path, Path]) -> None:
    """securityContext, probes and the limits of local/resources.yml (cpus 1.5, memory_mb 2048 for site-b)."""
    found = {(o["kind"], o["metadata"]["name"]): o for o in objects(generated[1])}
    for name in ("fl-server", "site-1", "site-b"):
        container = found[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
        assert container["readinessProbe"]["exec"]["command"][:3] == ["flctl", "node", "health"]
        assert "livenessProbe" in container
    site_b = found[("Deployment", "site-b")]["spec"]["template"]["spec"]["containers"][0]
    assert site_b["resources"]["limits"] == {"cpu": "1.5", "memory": "2048Mi"}
    assert site_b["volumeMounts"][-2:] == [
        {"name": "data", "mountPath": "/data/scans", "readOnly": True, "subPath": "scans"},
        {"name": "data", "mountPath": "/data/labels/", "readOnly": True, "subPath": "labels"}]
    assert found[("Deployment", "site-b")]["spec"]["template"]["spec"]["volumes"][-1] == {
        "name": "data", "persistentVolumeClaim": {"claimName": "b-data", "readOnly": True}}
    assert found[("PersistentVolumeClaim", "fl-server-workspace")]["spec"]["storageClassName"] == "fast"
    assert found[("Service", "fl-server")]["spec"]["ports"][0]["port"] == 8443
    policy = found[("NetworkPolicy", "fedk8s-server-federation-only")]["spec"]
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}]}]
    assert {o["metadata"]["namespace"] for o in found.values()} == {"fl"}


def test_the_chart_renders_the_same_objects_from_its_own_values_and_kits(generated: tuple[Path, Path]) -> None:
    """chart/values.yaml and chart/kits/ give back kubernetes.yaml through the generator too."""
    out = generated[1]
    chart = out / "chart"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values == json.loads((out / "values.json").read_text())
    files = {d.name: {p.name.replace(".", "/", 1): p.read_bytes() for p in d.iterdir()}
             for d in (chart / "kits").iterdir()}
    assert manifests(values, files) == objects(out)
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["apiVersion"] == "v2"
    assert {p.name for p in (chart / "templates").iterdir()} == {
        "_helpers.tpl", "secrets.yaml", "server.yaml", "sites.yaml", "networkpolicies.yaml"}


def helm_template(chart: Path) -> list[dict[str, Any]]:
    """`helm lint --strict` then `helm template fl CHART`, by Helm's own engine (Helm 4's Go SDK, bound by
    helm-python-sdk: no helm binary is installable here); the rendered objects."""
    helm = pytest.importorskip("helm_python", reason="needs the k8s extra: bash scripts/setup.sh --all")
    lint = helm.lint(str(chart), strict=True, kube_version=f"{K8S_VERSION}.0")
    assert lint["errors"] == [] and all(m["severity"] <= 1 for m in lint["messages"]), lint  # 1: INFO (no icon)
    with helm.Chart.load(str(chart)) as loaded:
        rendered = loaded.render({}, name="fl", namespace="default")
    return [obj for _, text in sorted(rendered.items()) for obj in yaml.safe_load_all(text) if obj]


def test_helm_renders_the_chart_to_exactly_the_manifests_and_each_validates(generated: tuple[Path, Path]) -> None:
    """The Go templates in chart/templates/, rendered by Helm with the chart's own values.yaml and kits/, give
    exactly kubernetes.yaml's objects, and each is valid for Kubernetes 1.32, strictly."""
    kv = pytest.importorskip("kubernetes_validate", reason="needs the k8s extra: bash scripts/setup.sh --all")
    rendered = helm_template(generated[1] / "chart")
    key = lambda obj: (obj["kind"], obj["metadata"]["name"])  # noqa: E731
    assert sorted(rendered, key=key) == sorted(objects(generated[1]), key=key)
    for obj in rendered:
        kv.validate(obj, K8S_VERSION, strict=True)


def test_names_are_mapped_and_collisions_refused() -> None:
    """Site_1 -> site-1; '1a' -> p-1a; Site_1 beside site-1 is refused, naming both."""
    assert container_name("Site_1") == "site-1" and container_name("hospital.A") == "hospital-a"
    assert container_name("1a") == "p-1a"
    with pytest.raises(DeployInputError, match=r"\[participants.site-1\] maps to 'site-1', as 'Site_1' does"):
        container_names(["Site_1", "site-1"])


def test_bad_input_is_refused_with_exit_2_and_nothing_written(tmp_path: Path) -> None:
    """No kits; a changed kit; localhost; a port below 1024; an existing DIR: exit 2 naming the field."""
    empty = tmp_path / "empty"
    empty.mkdir()
    done = flctl("deploy", "k8s", empty, "-o", tmp_path / "o1")
    assert done.returncode == 2 and "[PROJECT_WORKSPACE]" in done.stderr and "Traceback" not in done.stderr
    ws = make_workspace(tmp_path / "a")
    node_yml = ws / "fedk8s" / "prod_00" / "site-b" / "startup" / "node.yml"
    node_yml.write_text(node_yml.read_text() + "# edited\n")
    done = flctl("deploy", "k8s", ws, "-o", tmp_path / "o2")
    assert done.returncode == 2 and "[kits.site-b]" in done.stderr and "node.yml was changed" in done.stderr
    done = flctl("deploy", "k8s", make_workspace(tmp_path / "b", server="localhost"), "-o", tmp_path / "o3")
    assert done.returncode == 2 and "[server.name]" in done.stderr
    done = flctl("deploy", "k8s", make_workspace(tmp_path / "c", port=443), "-o", tmp_path / "o4")
    assert done.returncode == 2 and "[server.port]" in done.stderr
    done = flctl("deploy", "k8s", make_workspace(tmp_path / "d"), "-o", tmp_path / "o5", "--namespace", "Bad_NS")
    assert done.returncode == 2 and "[--namespace]" in done.stderr
    done = flctl("deploy", "k8s", make_workspace(tmp_path / "e"), "-o", tmp_path / "o6", "--data-claim", "Site_1=d")
    assert done.returncode == 2 and "[--data-claim] Site_1 lists no data_paths" in done.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("o", ".o"))]


def test_a_sites_bundle_for_another_cluster_holds_no_server_object_and_no_server_key(tmp_path: Path) -> None:
    """--site Site_1 with a public server name: its Secret, Deployment and the sites' policy only; an in-cluster
    server name or an unknown site: exit 2 naming --site."""
    kv = pytest.importorskip("kubernetes_validate", reason="needs the k8s extra: bash scripts/setup.sh --all")
    ws = make_workspace(tmp_path / "a", server="fl.example.org")
    done = flctl("deploy", "k8s", ws, "-o", tmp_path / "out", "--site", "Site_1", "--json")
    assert done.returncode == 0, done.stderr
    found = objects(tmp_path / "out")
    assert [(o["kind"], o["metadata"]["name"]) for o in found] == [
        ("Secret", "site-1-kit"), ("Deployment", "site-1"), ("NetworkPolicy", "fedk8s-sites-federation-only")]
    for obj in found:
        kv.validate(obj, K8S_VERSION, strict=True)
    assert "startup.site.key" in found[0]["data"]
    assert not list((tmp_path / "out" / "chart" / "kits").glob("fl-server*"))
    values = yaml.safe_load((tmp_path / "out" / "chart" / "values.yaml").read_text())
    files = {d.name: {p.name.replace(".", "/", 1): p.read_bytes() for p in d.iterdir()}
             for d in (tmp_path / "out" / "chart" / "kits").iterdir()}
    assert manifests(values, files) == found
    rendered = helm_template(tmp_path / "out" / "chart")
    assert sorted(rendered, key=lambda o: o["kind"]) == sorted(found, key=lambda o: o["kind"])
    done = flctl("deploy", "k8s", make_workspace(tmp_path / "b"), "-o", tmp_path / "o2", "--site", "Site_1")
    assert done.returncode == 2 and "[--site] the server's name fl-server resolves only inside" in done.stderr
    done = flctl("deploy", "k8s", ws, "-o", tmp_path / "o3", "--site", "nobody")
    assert done.returncode == 2 and "[--site] nobody" in done.stderr
