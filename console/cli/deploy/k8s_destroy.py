"""`flctl deploy destroy DIR`: delete the Kubernetes objects `flctl deploy k8s --apply -o DIR` recorded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal

KubeconfigOption = Annotated[Path | None, typer.Option(dir_okay=False, help="A `flctl deploy k8s` folder: the "
                                                       "kubeconfig [default: $KUBECONFIG, else ~/.kube/config].")]
ContextOption = Annotated[str | None, typer.Option(help="A `flctl deploy k8s` folder: the kubeconfig's context.")]


def run(out: Path, dry_run: bool, yes: bool, kubeconfig: Path | None, context: str | None, json_out: bool) -> None:
    from flctl.cloud.deploy_state import DeploymentState, locked
    from flctl.cloud.k8s_apply import Cluster, destroy_records, state_folder

    folder = state_folder(out)
    state = DeploymentState.load(folder)
    records = [r for r in state.records if r.provider == "k8s"] if state else []
    rows = [[r.participant, r.kind, r.id] for r in records]
    if dry_run or not records or state is None:
        if json_out:
            terminal.print_json([{"participant": r.participant, "kind": r.kind, "id": r.id, "status": "planned"}
                                 for r in records])
        elif not records:
            terminal.success(f"nothing to destroy: {folder} records no Kubernetes object")
        else:
            terminal.table(["participant", "kind", "namespace/name"], rows, title="destroy plan (nothing deleted)")
        return
    if not yes:
        if not sys.stdin.isatty():
            terminal.abort(f"destroy would delete {len(rows)} objects; pass --yes to confirm", exit_codes.BAD_INPUT)
        terminal.table(["participant", "kind", "namespace/name"], rows, title="to delete")
        if not typer.confirm(f"Delete these {len(rows)} objects?", default=False):
            terminal.abort("nothing was deleted", exit_codes.FAILED)
    api = Cluster(kubeconfig, context).client()
    with locked(folder):
        done = destroy_records(api, state)
    if json_out:
        terminal.print_json([{"participant": r.participant, "kind": r.kind, "id": r.id, "status": how}
                             for r, how in done])
    else:
        terminal.table(["participant", "kind", "namespace/name", "status"],
                       [[r.participant, r.kind, r.id, how] for r, how in done], title="destroy")
        terminal.success(f"destroyed: {len(done)} objects")
