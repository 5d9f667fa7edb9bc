"""What a relay sends up for one task: its sites' answers as one (pure maths; no network).

FedAvg at the parent computes sum_r(N_r * x_r) / sum_r(N_r) over the answers r it gets. A relay answers with
x_r = sum_i(n_i * x_i) / N_r and N_r = sum_i(n_i) over its sites i, so the parent's mean is sum_i(n_i * x_i) /
sum_i(n_i): FedAvg over every site, whatever the tree (relays of relays too). Only rounding differs: one more
division and multiplication in the model's dtype (float32 for most models), as when sites answer in another order.
Metrics are combined the same way (weighted means), so the server's weighted metric means equal a flat job's.
When every weight is zero, each relay's plain mean counts with weight zero too, and the parent's plain mean over
relays is not the plain mean over sites: a job through relays must report num_examples (FedAvg jobs do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flctl.node.jobs.tasks import PARAMS_TYPE, Params, TaskResult
from flctl.node.workflows.aggregation import WeightedSum, weighted_metrics

WORKFLOWS = ("fedavg", "fedavgm", "fedopt")
"""The workflows a relay carries: their server side needs only each round's weighted mean of the sites' models (and
FedProx is FedAvg with proximal_mu). Others (cyclic, swarm, SCAFFOLD's controls, statistics, secure aggregation...)
need each site's own answer, and a job of theirs that reaches a relay is refused there, saying so."""


@dataclass
class Combined:
    params: Params
    num_examples: int
    metrics: dict[str, float]
    meta: dict[str, Any]


def combine(answers: Sequence[TaskResult]) -> Combined:
    """The answers as one: the weighted mean of their models (weights num_examples), the sum of num_examples, the
    weighted means of their metrics. ValueError when there is none, or when they do not fit together (other tensors,
    full models beside diffs)."""
    if not answers:
        raise ValueError("no site answered")
    kinds = {str(a.meta.get(PARAMS_TYPE, "full")) for a in answers if a.params}
    if len(kinds) > 1:
        raise ValueError(f"the sites answered with {' and '.join(sorted(kinds))} params together; a relay adds up "
                         "only answers of one params_type")
    with_model = [a for a in answers if a.params]
    params: Params = {}
    if with_model:
        total = WeightedSum()
        for answer in with_model:
            total.add(answer.params, answer.num_examples, site=answer.site)
        params = total.result()
    meta: dict[str, Any] = {}
    if kinds:
        meta[PARAMS_TYPE] = kinds.pop()
    meta["relayed_sites"] = sorted(_sites(a) for a in answers)
    return Combined(params, sum(int(a.num_examples) for a in answers),
                    weighted_metrics((a.metrics, a.num_examples) for a in answers), meta)


def refusal_for(workflow: str, args: dict[str, Any]) -> str:
    """Why a job of `workflow` with `args` cannot run through a relay; '' when it can."""
    if workflow not in WORKFLOWS:
        return (f"workflow {workflow} needs each site's own answer, and a relay sends one combined answer up; "
                f"through relays run {', '.join(WORKFLOWS)}")
    for key in ("encryption", "secure_aggregation"):
        value = args.get(key)
        if value not in (None, "", "none", False):
            return f"{key}: {value} adds the sites' answers at the server, which a relay's one answer would undo"
    return ""


def _sites(answer: TaskResult) -> str:
    below = answer.meta.get("relayed_sites")
    return f"{answer.site}({','.join(below)})" if isinstance(below, list) else answer.site


def site_metrics(metrics: Mapping[str, float], site: str) -> dict[str, float]:
    """A site's metrics as its relay passes them up with its logs: each name prefixed with the site's."""
    return {f"{site}/{name}": float(value) for name, value in metrics.items()}
