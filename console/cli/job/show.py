"""`flctl job show ID`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption


def command(job_id: Annotated[str, typer.Argument(metavar="ID")], kit: KitOption = None, _context: ContextOption = None,
            json_out: JsonOption = False) -> None:
    """Show a job: status, rounds done, each site's state, the last metrics and where its artifacts are; a
    statistics job's figures as tables (a feature's statistics per site and global), a data check's verdicts."""
    from flctl.console.cli.job.fedbuff_view import show as show_fedbuff
    from flctl.console.cli.job.frameworks_view import show as show_frameworks
    from flctl.console.cli.job.inference_view import show as show_inference
    from flctl.console.cli.job.render import cross_site_table, duration, metrics_line, outcome, progress
    from flctl.console.cli.job.statistics_view import show as show_statistics
    from flctl.node.jobs.job_status import JobStatus

    with connect(kit) as admin:
        job = admin.get_job(job_id)
    if json_out:
        terminal.print_json(job.to_json())
        return
    pairs = [("id", job.id), ("name", job.name), ("status", outcome(job)), ("workflow", job.workflow),
             ("rounds", progress(job)), ("min sites", job.min_sites),
             ("submitter", f"{job.submitter} ({job.submitter_org})"), ("duration", duration(job)),
             ("artifacts", job.artifacts)]
    if job.compat:
        pairs.append(("compat", f"{job.compat} (the script imports flctl's {job.compat} Client API, never an "
                                "installed one)"))
    if job.wait_reason and job.status == JobStatus.SUBMITTED:
        pairs.append(("waiting", job.wait_reason))
    if job.error:
        pairs.append(("error", job.error))
    if job.last_metrics:
        pairs.append(("last metrics", metrics_line(job.last_metrics)))
    terminal.fields(pairs)
    if job.sites:
        terminal.table(["site", "state", "round", "error"],
                       [(s.name, s.state, s.round + 1 if s.round >= 0 else "-", s.error) for s in job.sites])
    columns, rows = cross_site_table(job.reports.get("cross_site_eval"))
    if rows:
        terminal.table(columns, rows, title="cross-site evaluation (rows evaluate the column's model)")
        for name, why in sorted(job.reports["cross_site_eval"].get("missing", {}).items()):
            terminal.warning(f"{name} {why}")
    show_statistics(job.reports)
    show_frameworks(job.reports)
    show_fedbuff(job.reports)
    show_inference(job.reports)
