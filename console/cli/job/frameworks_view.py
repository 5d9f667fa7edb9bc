"""`flctl job show`'s tables for the classic-ML workflows' reports (kmeans, xgboost, forest, ditto): what each
found, and each site's figures. `tables` is pure (reports in, rows out); `show` prints them."""

from __future__ import annotations

from typing import Any

Table = tuple[str, list[str], list[tuple[Any, ...]]]


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _site_rows(sites: dict[str, dict[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    names = sorted({name for values in sites.values() for name in values})
    return ["site", *names], [(site, *(_number(values.get(n, "-")) for n in names))
                              for site, values in sorted(sites.items())]


def tables(reports: dict[str, Any]) -> list[Table]:
    """(title, columns, rows) for each classic-ML report a job has."""
    out: list[Table] = []
    if isinstance(kmeans := reports.get("kmeans"), dict):
        sizes = kmeans.get("cluster_sizes", [])
        out.append((f"k-means: {'converged' if kmeans.get('converged') else 'stopped'} after "
                    f"{kmeans.get('iterations')} iterations, inertia {_number(kmeans.get('inertia'))}",
                    ["cluster", "points"], [(i, size) for i, size in enumerate(sizes)]))
    if isinstance(boost := reports.get("xgboost"), dict):
        columns, rows = _site_rows(boost.get("sites", {}))
        out.append((f"xgboost ({boost.get('mode')}): {boost.get('trees')} trees; each site's figures of the final "
                    "model on its rows", columns, rows))
    if isinstance(forest := reports.get("forest"), dict):
        columns, rows = _site_rows(forest.get("sites", {}))
        out.append((f"forest: {forest.get('trees')} trees pooled; each site's figures of the pooled forest",
                    columns, rows))
    if isinstance(ditto := reports.get("ditto"), dict):
        sites = {site: {f"{kind} {name}": value for kind in ("global", "personal")
                        for name, value in models.get(kind, {}).items()}
                 for site, models in ditto.get("sites", {}).items()}
        columns, rows = _site_rows(sites)
        out.append((f"ditto (lambda {_number(ditto.get('lambda'))}): each site's global and personal model, last "
                    "round", columns, rows))
    return out


def show(reports: dict[str, Any]) -> None:
    from flctl.console.cli import terminal

    for title, columns, rows in tables(reports):
        if rows:
            terminal.table(columns, rows, title=title)
        else:
            terminal.info(title)
