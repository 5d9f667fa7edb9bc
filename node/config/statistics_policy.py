"""The `statistics:` section of a site's `local/privacy.yml`: what the site releases of federated statistics.

    statistics:
      min_count: 10             # a feature, histogram bin or cohort with fewer records is not released
      max_bins_percent: 10      # a histogram may have at most this share (%) of the feature's records as bins
      noise_level: [0.1, 0.3]   # min and max are moved outward by a random share in this range of their size
      noise: none               # laplace or gaussian: noise added to every released count (counts, bins, cohorts)
      noise_scale: 1.0          # its scale (Laplace b, Gaussian sigma), in records

These are NVIDIA FLARE's cleansers (MinCountCleanser, HistogramBinsCleanser, AddNoiseToMinMax) with FLARE's
defaults. They are applied in the site's job process, outside the job's script, whatever the privacy scope: a job
may ask for a higher min_count, never a lower one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StatisticsPolicy(BaseModel):
    """What a site lets leave it of federated statistics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_count: int = Field(10, ge=1, description="A feature, histogram bin or cohort with fewer records than this "
                                                 "is not released (the result says so)")
    max_bins_percent: float = Field(10.0, gt=0, le=100, description="A histogram with more bins than this share "
                                                                    "(%) of the feature's records is refused")
    noise_level: tuple[float, float] = Field(
        (0.1, 0.3), description="min and max are moved outward by a random share, drawn in this range, of their "
                                "size ([0, 0]: released exactly)")
    noise: Literal["none", "laplace", "gaussian"] = Field("none", description="Noise added to every released count")
    noise_scale: float = Field(1.0, ge=0, description="The noise's scale (Laplace b, Gaussian sigma), in records")

    @model_validator(mode="after")
    def _range(self) -> StatisticsPolicy:
        lo, hi = self.noise_level
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"noise_level [{lo:g}, {hi:g}] must be two shares with 0 <= low <= high <= 1")
        return self
