"""A job's `metrics.json`, at the server and in a simulation's output: a list of rows {site, round, name, value,
step}, strict JSON. JSON has no NaN or infinity, and a diverged loss is one: such a value is written as null
(Python's `NaN` token would stop `jq` and every strict parser) and read back as NaN."""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(rows: list[dict[str, Any]]) -> str:
    """`rows` as metrics.json's text: each non-finite `value` as null."""
    return json.dumps([{**row, "value": _finite(row.get("value"))} for row in rows], indent=1, allow_nan=False)


def loads(text: str) -> list[dict[str, Any]]:
    """metrics.json's rows (ValueError when it is not JSON); a null `value` as NaN. Rows that are not objects are
    left out."""
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ValueError("metrics.json holds no list of rows")
    return [{**row, "value": math.nan if row.get("value") is None else row["value"]}
            for row in rows if isinstance(row, dict)]


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
