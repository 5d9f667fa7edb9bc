"""The site's side of federated statistics, in the job's script process: the raw figures of the site's own data.

A statistics job's script hands flctl its data function and nothing else:

    import flctl.client as fl

    def load():                     # named columns: a pandas DataFrame, or a dict name -> array-like
        return pandas.read_csv("/data/patients.csv")

    if __name__ == "__main__":
        fl.serve_statistics(load)

`serve_statistics` answers every `statistics` task from `load()` (called once per task: nothing is kept between
the two passes, so a thousand simulated sites do not hold their data at once). What it answers is raw: the site's
privacy rules (min_count, max_bins_percent, noise) are applied to it afterwards, in the site's job process
(`flctl.node.site.statistics_release`), where the script cannot reach. A data function that raises fails this
site's part with its reason; the script stays up for the next task.

The steps (`task.meta["step"]`): `summary` (count, failure_count, sum, mean, variance, min, max per feature),
`spread` (the squared deviations from the global mean, histograms over agreed bins), `cohort` (records matching a
filter) and `data_check` (the data against the job's schema, `flctl.node.client.data_check`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

Columns = dict[str, "np.ndarray"]
"""A site's data: column name -> a float64 array (NaN where missing) or an object array (a categorical column)."""


def columns_of(data: Any) -> Columns:
    """The named columns of what a data function returned: a pandas DataFrame or a mapping name -> array-like.
    Numbers (and booleans) become float64 with NaN where missing (NaN, ±inf, pandas' NA); anything else is a
    categorical column."""
    import numpy as np

    if hasattr(data, "columns") and hasattr(data, "__getitem__"):  # a pandas DataFrame, without importing pandas
        data = {str(name): _series_values(data[name]) for name in data.columns}
    if not isinstance(data, Mapping):
        raise TypeError(f"the data function must return a pandas DataFrame or a dict of column name -> values, "
                        f"not {type(data).__name__}")
    result: Columns = {}
    for name, values in data.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"column names must be non-empty strings, not {name!r}")
        array = np.asarray(values)
        if array.ndim != 1:
            array = array.reshape(-1)  # an image's pixels: one value per pixel
        if array.dtype.kind in "biuf":
            numbers = array.astype(np.float64, copy=False)
            finite = np.isfinite(numbers)
            result[name] = numbers if finite.all() else np.where(finite, numbers, np.nan)  # ±inf: missing too
        else:
            result[name] = _categorical(array)
    return result


def _series_values(series: Any) -> Any:
    """A pandas column as numpy values: a numeric one (nullable Int64 too) as float64 with NaN where missing."""
    import numpy as np

    if getattr(series.dtype, "kind", "O") in "biuf":
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy()


def _categorical(array: np.ndarray) -> np.ndarray:
    """An object array of strings, None where a value is missing (None, NaN, pandas' NA)."""
    import numpy as np

    out = np.empty(array.shape, dtype=object)
    for i, value in enumerate(array.tolist()):
        out[i] = None if value is None or str(value) in ("<NA>", "nan", "NaN", "None") else str(value)
    return out


def is_numeric(column: np.ndarray) -> bool:
    return column.dtype.kind == "f"


def missing_mask(column: np.ndarray) -> np.ndarray:
    """Where `column` has no value."""
    import numpy as np

    if is_numeric(column):
        nan: np.ndarray = np.isnan(column)
        return nan
    gone: np.ndarray = np.fromiter((v is None for v in column), dtype=bool, count=column.size)
    return gone


def summary(data: Columns, features: list[str] | None) -> dict[str, Any]:
    """Pass one: per feature, the count of values, the count missing (failure_count), and for a numeric one its
    sum, min, max, mean and variance (ddof=1) over this site's values. `features` None: every column."""
    wanted = list(data) if features is None else features
    figures: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name in wanted:
        column = data.get(name)
        if column is None:
            missing[name] = "this site has no such column"
            continue
        figures[name] = _summary_of(column)
    return {"features": figures, "missing": missing}


def _summary_of(column: np.ndarray) -> dict[str, Any]:
    import numpy as np

    gone = missing_mask(column)
    count = int(column.size - int(gone.sum()))
    figures: dict[str, Any] = {"count": count, "failure_count": int(column.size) - count}
    if not is_numeric(column):
        figures["categorical"] = True
        return figures
    values = column[~gone] if count != column.size else column
    if count:
        total = float(np.sum(values))
        figures.update({"sum": total, "mean": total / count, "min": float(values.min()), "max": float(values.max())})
    if count > 1:
        figures["variance"] = float(np.var(values, ddof=1))
    return figures


def spread(data: Columns, request: dict[str, Any]) -> dict[str, Any]:
    """Pass two, per feature of `request` ({feature: {"mean": global mean, "histogram": {"bins", "range"},
    "sketch": {"bins", "range"}}}): the count, the sum of squared deviations from the global mean, and the counts in
    the agreed bins (numpy's histogram: the last bin holds its upper edge; values outside the range are not
    counted). The `sketch` histogram is the one global quantiles are read from."""
    import numpy as np

    figures: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name, wanted in request.items():
        column = data.get(name)
        if column is None or not is_numeric(column):
            missing[name] = "this site has no such column" if column is None else "not a numeric column"
            continue
        values = column[~np.isnan(column)]
        out: dict[str, Any] = {"count": int(values.size)}
        if wanted.get("mean") is not None:
            out["sq_dev"] = float(np.sum(np.square(values - float(wanted["mean"]))))
        for kind in ("histogram", "sketch"):
            if kind in wanted:
                lo, hi = wanted[kind]["range"]
                counts, _ = np.histogram(values, bins=int(wanted[kind]["bins"]), range=(float(lo), float(hi)))
                out[kind] = [int(c) for c in counts]
        figures[name] = out
    return {"features": figures, "missing": missing}


def answer(data: Columns, meta: dict[str, Any]) -> dict[str, Any]:
    """The raw figures a `statistics` task with `meta` asks of `data`."""
    step = meta.get("step")
    if step == "summary":
        return summary(data, meta.get("features"))
    if step == "spread":
        return spread(data, dict(meta.get("request", {})))
    if step == "cohort":
        from flctl.node.client.cohort import cohort_counts

        return cohort_counts(data, dict(meta.get("cohorts", {})))
    if step == "data_check":
        from flctl.node.client.data_check import check

        return check(data, dict(meta.get("schema", {})))
    raise ValueError(f"the server asked for statistics step {step!r}, which this site's flctl does not know; "
                     "upgrade flctl at this site")


def serve(load: Callable[[], Any]) -> None:
    """Answer every statistics task of the job with figures of `load()`'s data, until the job ends. A task of
    another kind, or a data function that raises, is answered with the reason (that site's part fails)."""
    from flctl.node.client import api as fl

    fl.init()
    while fl.running():
        task = fl.receive()
        if task is None:
            break
        if task.task != "statistics":
            figures: dict[str, Any] = {"error": f"this is a statistics script; it cannot answer a {task.task!r} task"}
        else:
            figures = _figures(load, task.meta)
        fl.send(fl.Model(meta={"statistics": figures}))


def _figures(load: Callable[[], Any], meta: dict[str, Any]) -> dict[str, Any]:
    try:
        data = columns_of(load())
    except Exception as exc:  # noqa: BLE001 - the site's data function failed: this site's part fails, with why
        return {"error": f"the data function {getattr(load, '__name__', 'load')}() failed: "
                         f"{type(exc).__name__}: {exc}"}
    try:
        return answer(data, meta)
    except (TypeError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
