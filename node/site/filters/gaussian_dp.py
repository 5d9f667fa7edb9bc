"""`gaussian_dp`: the Gaussian mechanism on a site's update, with the privacy spent accounted (DP-FedAvg's client
step: McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018; NVIDIA FLARE and
Flower call it client-side fixed clipping with Gaussian noise).

On the update u of a result (`model_update`), every tensor together:

    u' = u * min(1, clip_norm / ||u||_2) + N(0, (noise_multiplier * clip_norm)^2 I)

Each release is one step of the sampled Gaussian mechanism (`noise_multiplier`, `sample_rate`: 1 when the site
answers every round) in the site's RDP accountant (`rdp_accountant`: Opacus's); the result carries the epsilon spent
so far at `delta` as its metrics `dp_epsilon` and `dp_delta` (so `flctl job show` and the metrics show it per site
and round), and the site's log says it. With `max_epsilon`, a release that would spend more is refused: the job
fails at the site and nothing is sent.

What the epsilon means: site-level differential privacy of each release against whoever reads it (the server), the
neighbouring case being the site's update present or absent (the clip bounds its influence to `clip_norm`). A job's
budget is counted from its first round at the site; at a real site the accountant is also written, before each
release goes out, to the job's folder (`privacy/0-gaussian_dp.json`, `keep_state`), so a job process restarted in
the middle of a job (the site restarted) goes on counting. Other jobs on the same data are not counted.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from flctl.node.jobs.tasks import TaskKind, TaskResult
from flctl.node.site.filters.base import Direction, Filter, FilterArgs, FilterContext
from flctl.node.site.filters.model_update import Update, carries_update, flat, own_aggregate, params_with, update_of
from flctl.node.site.filters.rdp_accountant import RdpAccountant, load_ledger, opacus_available, save_ledger

log = logging.getLogger("flctl.site.filters")

EPSILON_METRIC = "dp_epsilon"
DELTA_METRIC = "dp_delta"


class GaussianDpArgs(FilterArgs):
    """The arguments of `gaussian_dp`."""

    clip_norm: float = Field(gt=0, description="The L2 norm the whole update is clipped to (the sensitivity)")
    noise_multiplier: float = Field(gt=0, description="The noise's standard deviation, in units of clip_norm")
    delta: float = Field(1e-5, gt=0, lt=1, description="The delta at which the epsilon spent is reported")
    sample_rate: float = Field(1.0, gt=0, le=1, description="The chance that a round includes this site (1: the "
                                                            "site answers every round)")
    max_epsilon: float | None = Field(None, gt=0, description="The budget: a release that would bring the epsilon "
                                                              "spent above it is refused (the job fails here)")

    @model_validator(mode="after")
    def _opacus_installed(self) -> GaussianDpArgs:
        if not opacus_available():
            raise ValueError("gaussian_dp accounts the privacy spent with Opacus, which is not installed; install "
                             "the privacy extra (pip install 'flctl[privacy]')")
        return self


def gaussian_update(update: Update, clip_norm: float, noise_multiplier: float, rng: np.random.Generator) -> Update:
    """`update` scaled to an L2 norm of at most `clip_norm` (all tensors together), plus Gaussian noise of standard
    deviation `noise_multiplier * clip_norm` on every entry, drawn from `rng` in name order."""
    names = sorted(update)
    norm = float(np.linalg.norm(flat(update, names)))
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    sigma = noise_multiplier * clip_norm
    return {name: update[name] * scale + rng.normal(0.0, sigma, update[name].shape) for name in names}


class GaussianDp(Filter):
    """Clip the update's L2 norm, add Gaussian noise, account the privacy spent per site."""

    type_name: ClassVar[str] = "gaussian_dp"
    Args: ClassVar[type[FilterArgs]] = GaussianDpArgs
    directions: ClassVar[frozenset[Direction]] = frozenset(("result",))
    needs_received: ClassVar[bool] = True

    def __init__(self, args: FilterArgs, rng: np.random.Generator | None = None) -> None:
        if not isinstance(args, GaussianDpArgs):
            raise TypeError(f"gaussian_dp needs GaussianDpArgs, not {type(args).__name__}")
        super().__init__(args)
        self.settings = args
        self.rng = rng or np.random.default_rng()
        """Where the noise comes from: seeded by the OS (a test passes a seeded one)."""
        self.accountants: dict[str, RdpAccountant] = {}
        """Each site's releases in this job (the simulator runs every site's filters in one process)."""
        self.ledger: Path | None = None
        """Where the releases are kept across restarts of the job's process (`keep_state`); None: in memory only."""

    def keep_state(self, path: Path) -> None:
        self.accountants = load_ledger(path)
        self.ledger = path

    def filter_result(self, result: TaskResult, ctx: FilterContext) -> TaskResult:
        if ctx.task_kind == TaskKind.AGGREGATE:
            return own_aggregate(result, ctx.received, ctx.task_meta)
        if not carries_update(result, ctx.task_kind):
            return result
        args = self.settings
        accountant = self.accountants.setdefault(ctx.site, RdpAccountant())
        epsilon = accountant.epsilon_after(args.noise_multiplier, args.sample_rate, args.delta)
        if args.max_epsilon is not None and epsilon > args.max_epsilon:
            raise ValueError(f"sending round {ctx.round}'s update would spend epsilon {epsilon:.4g} at delta "
                             f"{args.delta:g}, above this site's max_epsilon {args.max_epsilon:g} (after "
                             f"{accountant.steps} releases); nothing was sent")
        noised = gaussian_update(update_of(result, ctx.received), args.clip_norm, args.noise_multiplier, self.rng)
        accountant.step(args.noise_multiplier, args.sample_rate)
        if self.ledger is not None:  # before it goes out: a restart never forgets a release that was sent
            save_ledger(self.ledger, self.accountants)
        log.info("privacy spent at %s in job %s after round %d: epsilon %.4f at delta %g (gaussian_dp: "
                 "clip_norm %g, noise_multiplier %g, sample_rate %g, %d releases)", ctx.site, ctx.job_id, ctx.round,
                 epsilon, args.delta, args.clip_norm, args.noise_multiplier, args.sample_rate, accountant.steps)
        return replace(result, params=params_with(result, ctx.received, noised),
                       metrics={**result.metrics, EPSILON_METRIC: epsilon, DELTA_METRIC: args.delta})
