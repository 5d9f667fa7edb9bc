"""`flctl job show`'s and `flctl simulate`'s table for an inference job's report: each site's declared metrics and
the number of records it ran over, the all-sites row, and the sites that gave no answer. `table` is pure (report in,
rows out); `show` prints it."""

from __future__ import annotations

from typing import Any

ALL_SITES = "all sites"


def table(reports: dict[str, Any]) -> tuple[list[str], list[list[str]], dict[str, str]] | None:
    """(columns, rows, missing sites and why) of the `inference` report; None when the job has none."""
    report = reports.get("inference")
    if not isinstance(report, dict) or not isinstance(report.get("sites"), dict):
        return None
    names = [str(n) for n in report.get("returns", [])]
    rows = []
    for site, entry in report["sites"].items():
        metrics = entry.get("metrics", {}) if isinstance(entry, dict) else {}
        rows.append([str(site), str(entry.get("num_examples", "-")) if isinstance(entry, dict) else "-",
                     *(_number(metrics.get(n)) for n in names)])
    total = report.get("all_sites")
    total = total if isinstance(total, dict) else {}
    examples = sum(int(e.get("num_examples", 0)) for e in report["sites"].values() if isinstance(e, dict))
    rows.append([ALL_SITES, str(examples), *(_number(total.get(n)) for n in names)])
    missing = report.get("missing")
    missing = missing if isinstance(missing, dict) else {}
    return ["site", "num_examples", *names], rows, {str(k): str(v) for k, v in missing.items()}


def show(reports: dict[str, Any]) -> None:
    from flctl.console.cli import terminal

    found = table(reports)
    if found is None:
        return
    columns, rows, missing = found
    summed = ", ".join(reports["inference"].get("sum", [])) or "none"
    terminal.table(columns, rows, title=f"inference: what each site returned (all sites: summed {summed}; the "
                                        "others weighted by num_examples); predictions stay at the sites")
    for site, why in sorted(missing.items()):
        terminal.warning(f"{site} {why}")


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"
