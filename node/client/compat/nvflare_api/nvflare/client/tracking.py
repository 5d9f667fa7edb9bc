"""`nvflare.client.tracking`: the experiment-tracking writers, recorded as flctl metrics (`flare.log`).

flctl's store holds numbers: scalars, metrics and dicts of them are recorded (a dict as TAG/NAME, a step when
given); params, tags and text are accepted and dropped with one warning each.
"""

from __future__ import annotations

from typing import Any

from ..apis.analytix import AnalyticsDataType
from .api import log


class SummaryWriter:
    """TensorBoard's writer, as NVIDIA FLARE's: `add_scalar`, `add_scalars`, `flush`."""

    def __init__(self, ctx: Any = None) -> None:
        self._ctx = ctx

    def add_scalar(self, tag: str, scalar: float, global_step: int | None = None, **kwargs: Any) -> None:
        log(tag, scalar, AnalyticsDataType.SCALAR, global_step=global_step)

    def add_scalars(self, tag: str, scalars: dict[str, float], global_step: int | None = None,
                    **kwargs: Any) -> None:
        log(tag, scalars, AnalyticsDataType.SCALARS, global_step=global_step)

    def flush(self) -> None:
        """Nothing to flush: each value goes to the site's job process as it is added."""


class WandBWriter:
    """Weights & Biases' `log(metrics, step)`."""

    def __init__(self, ctx: Any = None) -> None:
        self._ctx = ctx

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        log("", metrics, AnalyticsDataType.METRICS, global_step=step)


class MLflowWriter:
    """MLflow's writer: metrics are recorded; params, tags and text are dropped (flctl records numbers)."""

    def __init__(self, ctx: Any = None) -> None:
        self._ctx = ctx

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        log(key, value, AnalyticsDataType.METRIC, global_step=step)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        log("", metrics, AnalyticsDataType.METRICS, global_step=step)

    def log_param(self, key: str, value: Any) -> None:
        log(key, value, AnalyticsDataType.PARAMETER)

    def log_params(self, values: dict[str, Any]) -> None:
        log("", values, AnalyticsDataType.PARAMETERS)

    def log_text(self, text: str, artifact_file_path: str) -> None:
        log(artifact_file_path, text, AnalyticsDataType.TEXT)

    def set_tag(self, key: str, tag: Any) -> None:
        log(key, tag, AnalyticsDataType.TAG)

    def set_tags(self, tags: dict[str, Any]) -> None:
        log("", tags, AnalyticsDataType.TAGS)
