"""Site filters: what a task brings in and what a result sends out pass through them, at the site, in the order the
site's `local/privacy.yml` lists them for the job's privacy scope (`base.py`: the interface; `pipeline.py`: the one
place that runs them; one module per filter).

`FILTERS` maps privacy.yml's `filter:` to the class; add a filter here to make it usable.
"""

from __future__ import annotations

from typing import Any

from flctl.node.site.filters.base import Filter
from flctl.node.site.filters.exclude_vars import ExcludeVars
from flctl.node.site.filters.gaussian_dp import GaussianDp
from flctl.node.site.filters.percentile_privacy import PercentilePrivacy
from flctl.node.site.filters.svt_privacy import SvtPrivacy

FILTERS: dict[str, type[Filter]] = {cls.type_name: cls for cls in (ExcludeVars, PercentilePrivacy, SvtPrivacy,
                                                                   GaussianDp)}


def make_filter(name: str, args: dict[str, Any]) -> Filter:
    """The filter `name` with `args` (KeyError for an unknown name, pydantic's ValidationError for bad args)."""
    cls = FILTERS[name]
    return cls(cls.Args.model_validate(args))
