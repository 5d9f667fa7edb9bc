"""The global figures of federated statistics from what the sites released: pure functions, tested against numpy
over the pooled data.

Two passes make the variance exact: pass one gives counts, sums, min and max (so the global mean and the histogram
ranges); pass two gives each site's sum of squared deviations from that global mean, so the global variance is
Σ(x - mean)² / (N - 1) over every record, not an average of the sites' variances. Histograms over agreed bins are
exact (the same edges everywhere: sums of counts). Quantiles are read from a merged histogram of `sketch_bins` bins
over the global range: each is within one bin width, (max - min) / bins, of numpy's over the pooled data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def merge_summary(figures: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One feature's global count, failure_count, sum, mean, min and max from the sites' pass-one figures (a site
    without a figure adds nothing to it)."""
    count = failures = 0
    sums: list[float] = []
    lows: list[float] = []
    highs: list[float] = []
    numeric = categorical = False
    for fig in figures:
        categorical = categorical or fig.get("categorical") is True
        count += int(fig.get("count") or 0)
        failures += int(fig.get("failure_count") or 0)
        if "sum" in fig:
            numeric = True
            sums.append(float(fig["sum"]))
        if "min" in fig and "max" in fig:
            lows.append(float(fig["min"]))
            highs.append(float(fig["max"]))
    merged: dict[str, Any] = {"count": count, "failure_count": failures}
    if categorical and not numeric:
        merged["categorical"] = True
    if numeric:
        total = math.fsum(sums)
        merged["sum"] = total
        merged["mean"] = total / count if count else None
    if lows:
        merged["min"], merged["max"] = min(lows), max(highs)
    return merged


def variance(sq_devs: Iterable[float], count: int) -> float | None:
    """The sample variance (ddof=1) of `count` records whose squared deviations from their mean sum to
    `sq_devs` (one sum per site); None with fewer than two records."""
    if count < 2:
        return None
    return math.fsum(sq_devs) / (count - 1)


def site_variance(fig: dict[str, Any]) -> float | None:
    """A site's own variance (ddof=1), as it released it."""
    value = fig.get("variance")
    return float(value) if value is not None else None


def stddev(var: float | None) -> float | None:
    return math.sqrt(var) if var is not None and var >= 0 else None


def merge_counts(histograms: Iterable[Sequence[int | None]], bins: int) -> tuple[list[int], int]:
    """The bin-wise sum of the sites' histograms over the same bins; a bin a site suppressed (None) adds nothing.
    (counts, how many site bins were suppressed)."""
    total = [0] * bins
    suppressed = 0
    for counts in histograms:
        for i, c in enumerate(counts[:bins]):
            if c is None:
                suppressed += 1
            else:
                total[i] += int(c)
    return total, suppressed


def histogram_edges(low: float, high: float, bins: int) -> list[float]:
    """The bin edges numpy uses for `bins` equal bins over [low, high] (an empty range widened by 0.5 each way)."""
    import numpy as np

    edges = np.histogram_bin_edges(np.empty(0), bins=bins, range=(low, high))
    return [float(e) for e in edges]


def sketch_quantiles(counts: Sequence[int], low: float, high: float, quantiles: Sequence[float]) -> dict[str, float]:
    """The quantiles of the records counted in `counts` (equal bins over [low, high]), each found in the bin where
    the cumulative count reaches q·N and interpolated linearly inside it. {str(q): value}; empty when no records."""
    edges = histogram_edges(low, high, len(counts))
    total = sum(counts)
    result: dict[str, float] = {}
    if total == 0:
        return result
    for q in quantiles:
        target = q * total
        before = 0
        for i, c in enumerate(counts):
            if c and before + c >= target:
                share = (target - before) / c
                result[str(q)] = edges[i] + share * (edges[i + 1] - edges[i])
                break
            before += c
    return result


def sketch_error(low: float, high: float, bins: int) -> float:
    """The stated error bound of a quantile read from a sketch: one bin width."""
    edges = histogram_edges(low, high, bins)
    return edges[1] - edges[0]
