"""Cohort discovery at a site, in the job's script process: how many records match each cohort's filter
(`flctl.node.jobs.filter_expr`, never `eval`). The counts are raw; the site's min_count is applied to them in its
job process (`flctl.node.site.statistics_release`)."""

from __future__ import annotations

from typing import Any

from flctl.node.client.statistics import Columns
from flctl.node.jobs.filter_expr import ExpressionError, mask, parse


def cohort_counts(data: Columns, cohorts: dict[str, Any]) -> dict[str, Any]:
    """{"cohorts": name -> matching records, "errors": name -> why it cannot be counted here}."""
    counts: dict[str, int] = {}
    errors: dict[str, str] = {}
    for name, text in cohorts.items():
        try:
            counts[name] = int(mask(parse(str(text)), data).sum())
        except ExpressionError as exc:
            errors[name] = str(exc)
    return {"cohorts": counts, "errors": errors}
