"""A site's data against a job's schema, in the job's script process: per column, whether it is fit, the first rule
it breaks and how many rows break it. The counts are raw; the site's min_count hides the small ones in its job
process (`flctl.node.site.statistics_release`). A rule's text never holds a figure of the data.

The schema (`flctl.node.workflows.data_check.ColumnRule`, as a dict): column -> {type: number | integer |
category | any, required, min, max, categories, max_missing}.
"""

from __future__ import annotations

from typing import Any

from flctl.node.client.statistics import Columns, is_numeric, missing_mask


def check(data: Columns, schema: dict[str, Any]) -> dict[str, Any]:
    """{"rows": records at this site, "columns": column -> {"ok", "rule", "rows"}}."""
    rows = max((c.size for c in data.values()), default=0)
    return {"rows": rows, "columns": {name: _column(data.get(name), dict(rule)) for name, rule in schema.items()}}


def _column(column: Any, rule: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    if column is None:
        if rule.get("required", True):
            return {"ok": False, "rule": "required: the column is absent", "rows": None}
        return {"ok": True, "rule": "absent (not required)", "rows": None}
    kind = rule.get("type", "any")
    gone = missing_mask(column)
    present = column[~gone]
    if kind in ("number", "integer") and not is_numeric(column):
        return {"ok": False, "rule": f"type: expected {kind}s, found text", "rows": int(present.size)}
    if kind == "integer":
        broken = int(np.sum(present != np.round(present)))
        if broken:
            return {"ok": False, "rule": "type: expected integers", "rows": broken}
    share = rule.get("max_missing")
    if share is not None and column.size and gone.sum() / column.size > share:
        return {"ok": False, "rule": f"max_missing: more than {share:g} of the values are missing",
                "rows": int(gone.sum())}
    for bound, test in (("min", np.less), ("max", np.greater)):
        if rule.get(bound) is not None and is_numeric(column):
            broken = int(np.sum(test(present, float(rule[bound]))))
            if broken:
                return {"ok": False, "rule": f"{bound}: values {'below' if bound == 'min' else 'above'} "
                                             f"{float(rule[bound]):g}", "rows": broken}
    categories = rule.get("categories")
    if categories:
        allowed = {str(c) for c in categories}
        broken = sum(1 for v in present.tolist() if (str(v) if not is_numeric(column) else f"{v:g}") not in allowed)
        if broken:
            return {"ok": False, "rule": "categories: values outside the allowed ones", "rows": broken}
    return {"ok": True, "rule": "", "rows": 0}
