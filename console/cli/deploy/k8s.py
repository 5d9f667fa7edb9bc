"""`flctl deploy k8s PROJECT_WORKSPACE -o DIR [--namespace NS] [--storage-class SC] ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption

WorkspaceArg = Annotated[Path, typer.Argument(metavar="PROJECT_WORKSPACE", help="The provisioning workspace, a "
                                              "project folder in it, or one of its prod_NN folders.")]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="The folder to write (must not exist).",
                                         file_okay=False)]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace DIR when it exists (once the new one is "
                                                           "complete).")]


def command(
    workspace: WorkspaceArg,
    out: OutOption,
    namespace: Annotated[str, typer.Option(help="The namespace of every object.")] = "flctl",
    storage_class: Annotated[str | None, typer.Option(help="The server workspace claim's storage class "
                                                      "[default: the cluster's].")] = None,
    image: Annotated[str, typer.Option(help="The image (`flctl deploy image build -t TAG`).")] = "flctl:latest",
    service_type: Annotated[str, typer.Option(help="The server's Service: ClusterIP (sites in this cluster), "
                                              "LoadBalancer or NodePort (sites elsewhere).")] = "ClusterIP",
    node_port: Annotated[int | None, typer.Option(help="The NodePort to use (30000-32767).")] = None,
    workspace_size: Annotated[str, typer.Option(help="The server workspace claim's size.")] = "10Gi",
    site: Annotated[list[str] | None, typer.Option("--site", help="Only this site (repeat for more), for a "
                                                   "cluster other than the server's: no server object; the sites "
                                                   "reach the server at its public name.")] = None,
    data_claim: Annotated[list[str] | None, typer.Option("--data-claim", metavar="SITE=CLAIM",
                                                         help="Mount the PersistentVolumeClaim CLAIM read-only at "
                                                              "SITE's data_paths (its local/resources.yml); "
                                                              "repeat per site.")] = None,
    force: ForceOption = False,
    apply: Annotated[bool, typer.Option("--apply", help="Then create or patch every object in the cluster of "
                                                        "the kubeconfig, recorded in DIR.deploy/ for "
                                                        "`flctl deploy destroy DIR`.")] = False,
    kubeconfig: Annotated[Path | None, typer.Option(dir_okay=False, help="The kubeconfig [default: $KUBECONFIG, "
                                                    "else ~/.kube/config].")] = None,
    context: Annotated[str | None, typer.Option(help="The kubeconfig's context [default: its current one].")] = None,
    json_out: JsonOption = False,
) -> None:
    """Write Kubernetes manifests and a Helm chart that run the federation from its kits.

    DIR/kubernetes.yaml: per participant a Secret holding its kit (never a ConfigMap); the
    server's Deployment, workspace claim and Service; a Deployment per site; NetworkPolicies that
    admit only the federation port; non-root, read-only containers with probes and the limits of
    each kit's local/resources.yml. DIR/chart/: the same objects as a Helm chart. Every kit is
    verified first. Names are mapped to Kubernetes names (Site_1 is site-1); a collision, a bad
    name or port, or a kit that fails its signature is refused with exit 2, and nothing is written.
    Apply with `kubectl apply -f DIR/kubernetes.yaml` or `helm install NAME DIR/chart`.
    """
    from flctl import __version__
    from flctl.cloud.k8s_apply import Cluster
    from flctl.cloud.k8s_bundle import K8sOptions, write_bundle
    from flctl.cloud.project_kits import load_project_kits

    kits = load_project_kits(workspace)
    options = K8sOptions(namespace, image, storage_class, service_type, node_port, workspace_size, site,
                         _claims(data_claim or []))
    api = Cluster(kubeconfig, context).client() if apply else None  # a bad kubeconfig: refused before writing
    values, objects = write_bundle(kits, options, out, __version__, force)
    names = {kit.participant: kit.name for kit in kits.nodes}
    applied = _apply(kits.project, objects, out, api, context) if api is not None else []
    if json_out:
        terminal.print_json({"out": str(out), "prod": str(kits.prod), "namespace": namespace, "names": names,
                             "server_service": values["server"]["service"], "reach": values["server"]["reach"],
                             "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in objects],
                             "applied": [{"kind": k, "name": n, "status": how} for k, n, how in applied]})
        return
    if applied:
        terminal.table(["kind", "name", "status"], [list(row) for row in applied], title=f"applied to {namespace}")
    shown = [k for k in kits.nodes if k.name in {values["server"]["name"] if values["server"]["deploy"] else "",
                                                 *(s["name"] for s in values["sites"])}]
    terminal.table(["participant", "kubernetes name", "kind"], [[k.participant, k.name, k.kind] for k in shown],
                   title=f"{kits.project} from {kits.prod}")
    if values["server"]["reach"] == "public":
        terminal.warning(f"sites reach the server at {kits.server_host}: make that name resolve to the "
                         f"Service {values['server']['service']}'s LoadBalancer or node address")
    terminal.success(f"wrote {len(objects)} objects to {out}/kubernetes.yaml and the chart {out}/chart; "
                     f"apply: kubectl apply -f {out}/kubernetes.yaml")


def _apply(project: str, objects: list[dict[str, Any]], out: Path, api: object, context: str | None) -> list[
        tuple[str, str, str]]:
    from flctl.cloud.deploy_state import DeploymentState, locked
    from flctl.cloud.k8s_apply import apply_objects, state_folder

    folder = state_folder(out)
    with locked(folder):
        state = DeploymentState.open(folder, project)
        return apply_objects(objects, api, state, context or "default")


def _claims(pairs: list[str]) -> dict[str, str]:
    from flctl.cloud.deploy_errors import DeployInputError

    claims: dict[str, str] = {}
    for pair in pairs:
        site, sep, claim = pair.partition("=")
        if not sep or not site or not claim:
            raise DeployInputError(f"[--data-claim] '{pair}' is not SITE=CLAIM")
        claims[site] = claim
    return claims
