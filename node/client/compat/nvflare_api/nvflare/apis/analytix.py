"""`AnalyticsDataType`: the kinds of values `flare.log` and the tracking writers send (NVIDIA FLARE's names)."""

from __future__ import annotations

from enum import StrEnum


class AnalyticsDataType(StrEnum):
    """Each value is its own name. flctl records numbers: SCALAR/METRIC (one) and SCALARS/METRICS (a dict of them);
    the other kinds are accepted and dropped with one warning (flctl's store holds numbers only)."""

    SCALARS = "SCALARS"
    SCALAR = "SCALAR"
    IMAGE = "IMAGE"
    TEXT = "TEXT"
    LOG_RECORD = "LOG_RECORD"
    PARAMETER = "PARAMETER"
    PARAMETERS = "PARAMETERS"
    METRIC = "METRIC"
    METRICS = "METRICS"
    MODEL = "MODEL"
    TAG = "TAG"
    TAGS = "TAGS"
