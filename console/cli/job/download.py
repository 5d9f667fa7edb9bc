"""`flctl job download ID`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption


def command(job_id: Annotated[str, typer.Argument(metavar="ID")],
            out: Annotated[Path, typer.Option("--out", "-o", file_okay=False,
                                              help="Folder to unpack into (as OUT/ID/).")] = Path("."),
            kit: KitOption = None, _context: ContextOption = None, json_out: JsonOption = False) -> None:
    """Download a job's artifacts: global models per round and final, metrics, logs, events."""
    from flctl.console.cli.progress import byte_progress
    from flctl.node.admin.admin_client import check_job_id

    check_job_id(job_id)  # before any folder is made or any connection opened
    with connect(kit) as admin, byte_progress(f"downloading {job_id}", json_out) as progress:
        target = admin.download_job(job_id, out, progress=progress)
    if json_out:
        terminal.print_json({"id": job_id, "path": str(target)})
        return
    terminal.success(f"downloaded job {job_id} to {target}")
    _plot_statistics(target / "reports")


def _plot_statistics(reports: Path) -> None:
    """A statistics job's PNG histograms, one per feature, beside reports/statistics.json."""
    import json

    from flctl.console.cli.job.statistics_plots import write_histograms

    report = reports / "statistics.json"
    if report.is_file():
        written = write_histograms(json.loads(report.read_text()), reports)
        if written:
            terminal.info(f"histograms: {len(written)} PNG files beside {report}")
