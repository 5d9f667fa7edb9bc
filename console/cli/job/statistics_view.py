"""How a statistics job's result looks in the terminal (`flctl job show`): one table per feature (a row per
statistic, a column per site and one for the global figure), a table of cohorts, the data check as a site x column
table, and what each site refused or lacked. Pure: the tables are built here, printed by `show`."""

from __future__ import annotations

from typing import Any

Table = tuple[str, list[str], list[list[str]]]
"""(title, columns, rows)."""

GLOBAL = "global"
_ROWS = ("count", "failure_count", "sum", "mean", "variance", "stddev", "min", "max")


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def histogram_cell(hist: Any) -> str:
    """A histogram as its counts, `?` for a bin a site did not release, e.g. `[18, 98] 0 71 208 ? 90`."""
    if not isinstance(hist, dict):
        return "-"
    low, high = hist.get("range", [None, None])
    counts = " ".join("?" if c is None else str(c) for c in hist.get("counts", []))
    return f"[{number(low)}, {number(high)}] {counts}"


MAX_SITES = 8
"""More sites than this: a feature's table shows the global figures only (`--json` has every site's)."""


def feature_tables(report: dict[str, Any], max_sites: int = MAX_SITES) -> list[Table]:
    """One table per feature: rows are the statistics, columns the sites and `global` (the global column alone
    with more than `max_sites` sites)."""
    results = report.get("results") or {}
    sites = [s for s in report.get("sites", []) if s in results]
    sites = sites if len(sites) <= max_sites else []
    columns = [*sites, GLOBAL]
    refused = report.get("refused") or {}
    missing = report.get("missing") or {}
    tables: list[Table] = []
    for feature in report.get("features", []):
        cells = {c: (results.get(c) or {}).get(feature) for c in columns}
        rows: list[list[str]] = []
        if (cells[GLOBAL] or {}).get("categorical"):
            rows = [[stat, *(_cell(cells[c], stat, c, feature, refused, missing) for c in columns)]
                    for stat in ("count", "failure_count") if stat in report.get("statistics", [])]
            tables.append((f"{feature} (categorical)", ["statistic", *columns], rows))
            continue
        for stat in (s for s in _ROWS if s in report.get("statistics", [])):
            rows.append([stat, *(_cell(cells[c], stat, c, feature, refused, missing) for c in columns)])
        if "histogram" in report.get("statistics", []):
            rows.append(["histogram", *(histogram_cell((cells[c] or {}).get("histogram")) if cells[c] is not None
                                        else _absent(c, feature, "histogram", refused, missing) for c in columns)])
        if "quantile" in report.get("statistics", []):
            qs = sorted({q for c in columns for q in ((cells[c] or {}).get("quantile") or {})}, key=float)
            for q in qs:
                rows.append([f"quantile {q}", *(number(((cells[c] or {}).get("quantile") or {}).get(q))
                                                for c in columns)])
            bound = (cells[GLOBAL] or {}).get("quantile_error")
            if bound is not None:
                rows.append(["quantile error ≤", *(number((cells[c] or {}).get("quantile_error")) for c in columns)])
        tables.append((feature, ["statistic", *columns], rows))
    return tables


def _cell(figures: Any, stat: str, column: str, feature: str, refused: dict[str, Any],
          missing: dict[str, Any]) -> str:
    if figures is None:
        return _absent(column, feature, stat, refused, missing)
    return number(figures.get(stat))


def _absent(column: str, feature: str, stat: str, refused: dict[str, Any], missing: dict[str, Any]) -> str:
    if feature in (missing.get(column) or {}):
        return "absent"
    why = (refused.get(column) or {}).get(feature) or {}
    return "refused" if why.get("*") or why.get(stat) else "-"


def cohort_table(report: dict[str, Any]) -> Table | None:
    """A row per cohort: its filter, each site's count (`<min_count` where not released) and the global sum."""
    cohorts = report.get("cohorts")
    if not isinstance(cohorts, dict) or not cohorts:
        return None
    sites = list(report.get("sites", []))
    rows = []
    for name, entry in cohorts.items():
        counts = entry.get("sites") or {}
        cells = [("failed" if site not in counts else "< min_count" if counts[site] is None else str(counts[site]))
                 for site in sites]
        total = str(entry.get("global", 0)) + ("" if entry.get("complete") else " (at least)")
        rows.append([name, entry.get("filter", ""), *cells, total])
    return "cohorts (records matching each filter)", ["cohort", "filter", *sites, GLOBAL], rows


def refusals(report: dict[str, Any]) -> list[str]:
    """One line per refusal, missing feature, failed site and note: nothing is dropped silently."""
    lines = [f"{site} failed: {why}" for site, why in sorted((report.get("failed") or {}).items())]
    for site, features in sorted((report.get("refused") or {}).items()):
        for feature, whys in sorted(features.items()):
            for stat, why in sorted(whys.items()):
                lines.append(f"{site} refused {feature}{'' if stat == '*' else ' ' + stat}: {why}")
    for site, features in sorted((report.get("missing") or {}).items()):
        for feature, why in sorted(features.items()):
            lines.append(f"{site} has no {feature}: {why}")
    for feature, notes in sorted((report.get("notes") or {}).items()):
        lines += [f"{feature}: {note}" for note in notes]
    return lines


def data_check_table(report: Any) -> Table | None:
    """The data check as a site x column table: `ok`, or the rule broken and how many rows break it."""
    if not isinstance(report, dict) or not isinstance(report.get("results"), dict):
        return None
    columns = list(report.get("columns", []))
    rows = []
    for site in report.get("sites", []):
        result = report["results"].get(site)
        if result is None:
            rows.append([site, "failed", "-", *("-" for _ in columns)])
            continue
        fit = "yes" if (report.get("fit") or {}).get(site) else "no"
        cells = [_verdict((result.get("columns") or {}).get(c)) for c in columns]
        rows.append([site, fit, number(result.get("rows")) if result.get("rows") is not None else "< min_count",
                     *cells])
    return "data check (per site and column: ok, or the rule broken and its rows)", \
        ["site", "fit", "rows", *columns], rows


def _verdict(verdict: Any) -> str:
    if not isinstance(verdict, dict):
        return "-"
    if verdict.get("ok"):
        return "ok" if not verdict.get("rule") else f"ok ({verdict['rule']})"
    rows = verdict.get("rows")
    shown = f"{rows} rows" if rows is not None else ("< min_count rows" if verdict.get("rows_hidden") else "")
    return f"{verdict.get('rule', '')}" + (f" ({shown})" if shown else "")


def show(reports: dict[str, Any]) -> None:
    """Print a job's statistics and data-check reports, when it has them."""
    from flctl.console.cli import terminal

    stats = reports.get("statistics")
    if isinstance(stats, dict):
        for title, columns, rows in feature_tables(stats):
            terminal.table(columns, rows, title=f"statistics: {title}")
        cohorts = cohort_table(stats)
        if cohorts is not None:
            terminal.table(cohorts[1], cohorts[2], title=cohorts[0])
        if len(stats.get("sites", [])) > MAX_SITES:
            terminal.info(f"{len(stats['sites'])} sites: the tables show the global figures; each site's are in "
                          "--json and reports/statistics.json")
        lines = refusals(stats)
        for line in lines[:20]:
            terminal.warning(line)
        if len(lines) > 20:
            terminal.info(f"... and {len(lines) - 20} more refusals and notes (reports/statistics.json)")
    check = data_check_table(reports.get("data_check"))
    if check is not None:
        terminal.table(check[1], check[2], title=check[0])
        for site, why in sorted((reports["data_check"].get("failed") or {}).items()):
            terminal.warning(f"{site} failed: {why}")
