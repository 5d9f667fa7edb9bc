"""`percentile_privacy`: share only the largest changes, each clipped (Shokri & Shmatikov, "Privacy-preserving deep
learning", CCS 2015), as NVIDIA FLARE's `PercentilePrivacy` does, with its arguments.

On the update of a result (`model_update`): the cutoff is the `percentile`-th percentile of the absolute values of
every entry of every tensor; an entry whose absolute value is below it is not shared (0), and what is shared is
clipped to [-gamma, gamma]. Deterministic: no noise, so no differential-privacy guarantee.

Unlike FLARE: the update is not divided by a step count the script reports (a script could raise it to loosen the
clip), scalar tensors are filtered too (FLARE passes them), and a `full` model result is filtered as the model the
task brought plus the filtered update (FLARE filters only updates).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
from pydantic import Field

from flctl.node.jobs.tasks import TaskKind, TaskResult
from flctl.node.site.filters.base import Direction, Filter, FilterArgs, FilterContext
from flctl.node.site.filters.model_update import Update, carries_update, flat, own_aggregate, params_with, update_of


class PercentilePrivacyArgs(FilterArgs):
    """The arguments of `percentile_privacy` (NVIDIA FLARE's names and defaults)."""

    percentile: float = Field(10, ge=0, le=100, description="Changes whose absolute value is below this percentile "
                                                            "of all the update's absolute values are not shared "
                                                            "(0 to 100)")
    gamma: float = Field(0.01, gt=0, description="What is shared is clipped to [-gamma, gamma]")


def percentile_update(update: Update, percentile: float, gamma: float) -> Update:
    """`update` with the entries below the `percentile` cutoff of its absolute values zeroed, the rest clipped."""
    everything = np.abs(flat(update, sorted(update)))
    if everything.size == 0:
        return dict(update)
    cutoff = np.percentile(everything, percentile)
    return {name: np.clip(np.where(np.abs(value) < cutoff, 0.0, value), -gamma, gamma)
            for name, value in update.items()}


class PercentilePrivacy(Filter):
    """Largest-percentile sharing of a result's update, clipped."""

    type_name: ClassVar[str] = "percentile_privacy"
    Args: ClassVar[type[FilterArgs]] = PercentilePrivacyArgs
    directions: ClassVar[frozenset[Direction]] = frozenset(("result",))
    needs_received: ClassVar[bool] = True

    def __init__(self, args: FilterArgs) -> None:
        if not isinstance(args, PercentilePrivacyArgs):
            raise TypeError(f"percentile_privacy needs PercentilePrivacyArgs, not {type(args).__name__}")
        super().__init__(args)
        self.settings = args

    def filter_result(self, result: TaskResult, ctx: FilterContext) -> TaskResult:
        if ctx.task_kind == TaskKind.AGGREGATE:
            return own_aggregate(result, ctx.received, ctx.task_meta)
        if not carries_update(result, ctx.task_kind):
            return result
        update = percentile_update(update_of(result, ctx.received), self.settings.percentile, self.settings.gamma)
        return replace(result, params=params_with(result, ctx.received, update))
