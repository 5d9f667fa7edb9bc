"""`flctl node recover KIT`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.node.start import WorkspaceOpt, workspace_for
from flctl.console.cli.options import JsonOption


def command(
    kit: Annotated[Path, typer.Argument(metavar="KIT", help="The server's startup kit.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Rebuild the server's database from the job folders on disk, when `node start` says it is damaged.

    The damaged WORKSPACE/server.db is moved aside (kept, as server.db.damaged-<time>); every job in
    WORKSPACE/jobs comes back with its status (running ones resume when the server starts); what could not be
    recovered is listed. A database that passes its check is left alone. Run it with the server stopped.
    """
    from flctl.node.config.kit import load_kit
    from flctl.node.process import pidfile
    from flctl.node.security.audit import AuditLog
    from flctl.node.server.store_recovery import recover

    node_kit = load_kit(kit, verify=True)
    if node_kit.info.kind != "server":
        terminal.abort(f"{kit} is a {node_kit.info.kind}'s kit; only the server keeps a job database "
                       "(give the server's kit)", exit_codes.BAD_INPUT)
    ws = workspace_for(kit, workspace)
    if not ws.is_dir():
        terminal.abort(f"{ws} does not exist; give the server's workspace with -w", exit_codes.BAD_INPUT)
    pid = pidfile.read(ws)
    if pid is not None:
        terminal.abort(f"the server is running from {ws} (process {pid}); stop it first with "
                       f"`flctl node stop {kit}`", exit_codes.FAILED)
    report = recover(ws)
    if not report.healthy:
        AuditLog(ws / "audit.jsonl", key_pem=node_kit.key_pem, actor="server").append(
            "flctl node recover", "store.recover", moved_aside=[p.name for p in report.moved_aside],
            recovered=len(report.recovered), not_recovered=[folder for folder, _ in report.not_recovered])
    if json_out:
        terminal.print_json({
            "database": str(report.database), "damaged": not report.healthy,
            "moved_aside": [str(p) for p in report.moved_aside],
            "recovered": [{"id": j.id, "name": j.name, "status": j.status, "from": j.source}
                          for j in report.recovered],
            "not_recovered": [{"folder": folder, "reason": why} for folder, why in report.not_recovered],
            "lost": report.lost})
        return
    if report.healthy:
        terminal.success(f"{report.database} passed its check; nothing to recover (nothing was changed)")
        return
    for path in report.moved_aside:
        terminal.info(f"moved the damaged {path.name.split('.damaged-')[0]} aside to {path} (kept)")
    for job in report.recovered:
        terminal.info(f"recovered job {job.id} ({job.name}): {job.status}, from {job.source}")
    for folder, why in report.not_recovered:
        terminal.warning(f"could not recover {ws / 'jobs' / folder}: {why}")
    for what in report.lost:
        terminal.warning(f"lost: {what}")
    terminal.success(f"rebuilt {report.database} with {len(report.recovered)} jobs "
                     f"({len(report.not_recovered)} not recovered); start the server with `flctl node start {kit}`")
