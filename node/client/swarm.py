"""A swarm aggregator's work, done by the Client API in the site's script process (never by the script itself): the
weighted mean of the sites' models that an `aggregate` task carries, named `<site>/<tensor>`, with each site's
weight in the task's meta. The same sum as FedAvg's on the server (`WeightedSum`), so a swarm round gives the model
a FedAvg round gives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def weighted_mean(params: Mapping[str, Any], weights: Mapping[str, Any]) -> dict[str, Any]:
    """The weighted mean of the models in `params` (`<site>/<tensor>` -> array), site by site in `weights`' order;
    ValueError naming what is wrong (a site without a weight, models that do not fit one another)."""
    from flctl.node.workflows.aggregation import WeightedSum

    models: dict[str, dict[str, Any]] = {}
    for name, value in params.items():
        site, _, tensor = name.partition("/")
        if not tensor:
            raise ValueError(f"an aggregate task's tensor {name!r} is not named <site>/<tensor>")
        models.setdefault(site, {})[tensor] = value
    strangers = sorted(set(models) - set(weights))
    if strangers:
        raise ValueError(f"an aggregate task carries models of {', '.join(strangers)} without a weight")
    total = WeightedSum(like_name="the first model")
    for site, weight in weights.items():
        if site in models:
            total.add(models[site], float(weight), site=site)
    return total.result()
