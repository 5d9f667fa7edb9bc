"""`flctl job show`'s table for a fedbuff job's report: each site's updates taken, refused and failed, and how stale
they were, with the last reason a site's update was refused. `table` is pure (report in, rows out); `show` prints
it."""

from __future__ import annotations

from typing import Any

COLUMNS = ["site", "accepted", "refused", "failed", "mean staleness", "max staleness", "last refusal"]


def table(reports: dict[str, Any]) -> tuple[str, list[tuple[Any, ...]]] | None:
    """(title, rows) of the `fedbuff` report; None when the job has none."""
    report = reports.get("fedbuff")
    if not isinstance(report, dict) or not isinstance(report.get("sites"), dict):
        return None
    rows = [(site, t.get("accepted", 0), t.get("refused", 0), t.get("failed", 0),
             f"{t.get('staleness_mean', 0.0):.2f}", t.get("staleness_max", 0), (t.get("refusals") or ["-"])[-1])
            for site, t in sorted(report["sites"].items()) if isinstance(t, dict)]
    title = (f"fedbuff: model version {report.get('version')} of {report.get('updates')}, a step every "
             f"{report.get('buffer_size')} updates; each site's updates")
    return title, rows


def show(reports: dict[str, Any]) -> None:
    from flctl.console.cli import terminal

    found = table(reports)
    if found is not None:
        terminal.table(COLUMNS, found[1], title=found[0])
