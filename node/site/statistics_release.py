"""What a site lets leave it of a statistics task's answer: its `local/privacy.yml` `statistics:` rules applied to
the raw figures the job's script computed, in the site's job process (in the simulator's main process for a
simulated site), never in the script's. `FilterPipeline.result_out` calls `release` for every `statistics` task,
whatever the privacy scope: a job cannot turn it off, and asks in vain for a lower min_count than the site's.

The answer that leaves is rebuilt from the raw one key by key: only the figures named here, as finite numbers; no
params, no other meta. What was not released is named, per feature and statistic, in `refused`:

- a feature with fewer than min_count records: nothing of it but that it was refused;
- a histogram with more bins than max_bins_percent of the feature's records: refused; a bin with fewer than
  min_count records (but some): released as null, counted in `suppressed_bins`;
- a cohort with fewer than min_count records: released as null; a data check's row counts likewise;
- min and max: moved outward by a random share of their size in noise_level (NVIDIA FLARE's AddNoiseToMinMax);
- noise (laplace, gaussian): added to every released count, rounded, never below 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from flctl.node.config.statistics_policy import StatisticsPolicy

if TYPE_CHECKING:
    import numpy as np

REASON_LIMIT = 300
"""Longest reason (a missing column's, a failed data function's) a site sends out."""
_FLOATS = ("sum", "mean", "variance", "sq_dev")


def effective_min_count(policy: StatisticsPolicy, task_meta: dict[str, Any]) -> int:
    """The site's min_count, or the job's when the job asks for more (never less)."""
    asked = task_meta.get("min_count", 0)
    asked = asked if isinstance(asked, int) and not isinstance(asked, bool) else 0
    return max(policy.min_count, asked)


def release(task_meta: dict[str, Any], raw: Any, policy: StatisticsPolicy, rng: np.random.Generator) -> dict[str, Any]:
    """The figures that leave the site for a statistics task (`task_meta`) whose script answered `raw` (its meta's
    `statistics`)."""
    min_count = effective_min_count(policy, task_meta)
    step = task_meta.get("step")
    applied = {"min_count": min_count, "max_bins_percent": policy.max_bins_percent,
               "noise_level": list(policy.noise_level), "noise": policy.noise}
    out: dict[str, Any] = {"step": step, "policy": applied}
    if not isinstance(raw, dict):
        out["error"] = "the job's script answered the statistics task without figures"
        return out
    if "error" in raw:
        out["error"] = _text(raw["error"])
        return out
    gate = _Gate(policy, min_count, rng)
    if step in ("summary", "spread"):
        out.update(gate.features(raw, step))
    elif step == "cohort":
        out.update(gate.cohorts(raw))
    elif step == "data_check":
        out.update(gate.data_check(raw))
    else:
        out["error"] = f"unknown statistics step {step!r}"
    return out


class _Gate:
    """The rules of one release."""

    def __init__(self, policy: StatisticsPolicy, min_count: int, rng: np.random.Generator) -> None:
        self.policy = policy
        self.min_count = min_count
        self.rng = rng

    def features(self, raw: dict[str, Any], step: str) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        refused: dict[str, dict[str, str]] = {}
        for name, fig in _items(raw.get("features")):
            count = _count(fig.get("count"))
            if count is None:
                refused[name] = {"*": "the script gave no count"}
            elif count < self.min_count:
                refused[name] = {"*": f"fewer than {self.min_count} records (the site's min_count)"}
            else:
                figures[name], why = (self._summary if step == "summary" else self._spread)(fig, count)
                if why:
                    refused[name] = why
        missing = {name: _text(why) for name, why in _items(raw.get("missing"), str)}
        return {"features": figures, "refused": refused, "missing": missing}

    def _summary(self, fig: dict[str, Any], count: int) -> tuple[dict[str, Any], dict[str, str]]:
        out: dict[str, Any] = {"count": self.noisy(count)}
        failures = _count(fig.get("failure_count"))
        out["failure_count"] = self.noisy(failures) if failures is not None else None
        if fig.get("categorical") is True:
            out["categorical"] = True
            return out, {}
        for key in _FLOATS:
            if _finite(fig.get(key)):
                out[key] = float(fig[key])
        if _finite(fig.get("min")) and _finite(fig.get("max")):
            out["min"], out["max"] = self._outward(float(fig["min"]), float(fig["max"]))
        return out, {}

    def _spread(self, fig: dict[str, Any], count: int) -> tuple[dict[str, Any], dict[str, str]]:
        out: dict[str, Any] = {}  # not the count again: pass one released it (with its noise)
        refused: dict[str, str] = {}
        if _finite(fig.get("sq_dev")):
            out["sq_dev"] = float(fig["sq_dev"])
        for kind, statistic in (("histogram", "histogram"), ("sketch", "quantile")):
            bins = fig.get(kind)
            if not isinstance(bins, list):
                continue
            counts = [_count(c) for c in bins]
            if any(c is None for c in counts):
                refused[statistic] = "the script gave a histogram that is not counts"
            elif len(counts) > self.policy.max_bins_percent / 100 * count:
                refused[statistic] = (f"{len(counts)} bins is more than {self.policy.max_bins_percent:g}% of its "
                                      "records (the site's max_bins_percent)")
            else:
                out[kind], out[f"{kind}_suppressed_bins"] = self._bins([c for c in counts if c is not None])
        return out, refused

    def _bins(self, counts: list[int]) -> tuple[list[int | None], int]:
        released: list[int | None] = []
        for c in counts:
            released.append(self.noisy(c) if c == 0 or c >= self.min_count else None)
        return released, sum(1 for c in released if c is None)

    def cohorts(self, raw: dict[str, Any]) -> dict[str, Any]:
        counts: dict[str, int | None] = {}
        refused: dict[str, dict[str, str]] = {}
        for name, value in _items(raw.get("cohorts"), object):
            count = _count(value)
            if count is not None and count >= self.min_count:
                counts[name] = self.noisy(count)
            else:
                counts[name] = None
                refused[name] = {"cohort": f"fewer than {self.min_count} records (the site's min_count)"
                                 if count is not None else "the script gave no count"}
        errors = {name: _text(why) for name, why in _items(raw.get("errors"), str)}
        return {"cohorts": counts, "refused": refused, "errors": errors}

    def data_check(self, raw: dict[str, Any]) -> dict[str, Any]:
        rows = _count(raw.get("rows"))
        columns: dict[str, Any] = {}
        for name, verdict in _items(raw.get("columns")):
            broken = _count(verdict.get("rows"))
            shown = broken if broken is not None and broken >= self.min_count else None
            columns[name] = {"ok": verdict.get("ok") is True, "rule": _text(verdict.get("rule", "")),
                             "rows": None if shown is None else self.noisy(shown),
                             "rows_hidden": broken is not None and broken > 0 and shown is None}
        return {"rows": self.noisy(rows) if rows is not None and rows >= self.min_count else None,
                "columns": columns}

    def noisy(self, count: int) -> int:
        """`count` with the site's count noise, rounded and never below 0."""
        if self.policy.noise == "none" or self.policy.noise_scale == 0:
            return count
        scale = self.policy.noise_scale
        noise = self.rng.laplace(0.0, scale) if self.policy.noise == "laplace" else self.rng.normal(0.0, scale)
        return max(0, round(count + float(noise)))

    def _outward(self, low: float, high: float) -> tuple[float, float]:
        """min and max moved outward by a random share of their size (FLARE's AddNoiseToMinMax)."""
        lo_share, hi_share = self.policy.noise_level
        if hi_share == 0:
            return low, high
        a, b = (float(x) for x in self.rng.uniform(lo_share, hi_share, size=2))
        return low - abs(low) * a, high + abs(high) * b


def _items(value: Any, kind: type = dict) -> list[tuple[str, Any]]:
    """The (name, value) pairs of a mapping of the raw answer whose values are of `kind`; nothing else."""
    if not isinstance(value, dict):
        return []
    return [(str(k)[:REASON_LIMIT], v) for k, v in value.items() if isinstance(v, kind)]


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value) or value < 0:
        return None
    return int(value) if value == int(value) else None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    return str(value)[:REASON_LIMIT]
