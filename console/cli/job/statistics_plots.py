"""PNG histograms of a statistics job's result, one per feature, written beside `statistics.json` by
`flctl job download` (and `flctl simulate`): the global histogram as bars, each site's as a line over the same
bins. matplotlib is imported only here, only when a job has a histogram."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def histogram_features(report: dict[str, Any]) -> list[str]:
    """The features whose global histogram the report holds."""
    glob = (report.get("results") or {}).get("global") or {}
    return [name for name in report.get("features", []) if isinstance((glob.get(name) or {}).get("histogram"), dict)]


def png_name(feature: str) -> str:
    """`statistics-<feature>.png`, the feature's name made safe for a file name."""
    return f"statistics-{re.sub(r'[^A-Za-z0-9._-]', '_', feature)[:100]}.png"


def write_histograms(report: dict[str, Any], folder: Path) -> list[Path]:
    """One PNG per feature with a histogram, in `folder`; the files written."""
    features = histogram_features(report)
    if not features:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from flctl.node.workflows.statistics_merge import histogram_edges

    written: list[Path] = []
    results = report["results"]
    for feature in features:
        hist = results["global"][feature]["histogram"]
        counts = hist["counts"]
        edges = np.array(histogram_edges(float(hist["range"][0]), float(hist["range"][1]), len(counts)))
        figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
        axes.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#8fb3d9", edgecolor="#35608f",
                 label="global")
        for site in report.get("sites", []):
            own = ((results.get(site) or {}).get(feature) or {}).get("histogram")
            if isinstance(own, dict):
                values = [np.nan if c is None else c for c in own["counts"]]
                axes.step(edges, [*values, values[-1]], where="post", linewidth=1, label=site)
        axes.set_title(f"{feature}: histogram ({sum(counts)} records in range)")
        axes.set_xlabel(feature)
        axes.set_ylabel("records")
        if len(report.get("sites", [])) <= 10:
            axes.legend(fontsize="small")
        figure.tight_layout()
        path = folder / png_name(feature)
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
