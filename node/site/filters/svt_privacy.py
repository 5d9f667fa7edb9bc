"""`svt_privacy`: share a noisy, clipped fraction of the update, chosen by the sparse vector technique, as NVIDIA
FLARE's `SVTPrivacy` does, with its arguments (Lyu, Su & Li, "Understanding the Sparse Vector Technique for
Differential Privacy", VLDB 2017; used on updates by Li et al., MICCAI 2019).

On the update of a result (`model_update`), its tensors flattened in name order into one vector w of n entries:

    k         = min(ceil(n * fraction), n)                       entries to share
    threshold = tau + Laplace(2 gamma / epsilon)                 (epsilon_1 = epsilon: the noisy threshold)
    eps_2     = epsilon * (2k)^(2/3);  lambda_nu = 4 gamma k / eps_2
    repeat until k are accepted: every entry not yet accepted is accepted when
              |clip(w_i, gamma)| + Laplace(lambda_nu) >= threshold
    chosen    = k draws from the accepted (with replacement unless replace: false)
    shared    = clip(w_i + Laplace(2 gamma / noise_var), gamma) for the chosen, 0 for every other entry

Unlike FLARE: the update is not divided by a step count the script reports (a script could raise it to loosen the
clip), scalar tensors are filtered too (FLARE passes them through), and a `full` model result is filtered as the
model the task brought plus the filtered update. The noise comes from numpy's generator seeded by the OS; epsilon is
FLARE's per-release parameter, and repeated rounds compose (their sum bounds the total): nothing here accounts it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import ClassVar

import numpy as np
from pydantic import Field

from flctl.node.jobs.tasks import TaskKind, TaskResult
from flctl.node.site.filters.base import Direction, Filter, FilterArgs, FilterContext
from flctl.node.site.filters.model_update import (
    Update,
    carries_update,
    flat,
    own_aggregate,
    params_with,
    unflat,
    update_of,
)


class SvtPrivacyArgs(FilterArgs):
    """The arguments of `svt_privacy` (NVIDIA FLARE's names and defaults)."""

    fraction: float = Field(0.1, gt=0, le=1, description="The fraction of the update's entries shared (above 0, "
                                                         "at most 1)")
    epsilon: float = Field(0.1, gt=0, description="The privacy parameter of the noisy threshold and of the noisy "
                                                  "comparisons (FLARE's epsilon; above 0)")
    noise_var: float = Field(0.1, gt=0, description="The privacy parameter of the noise added to what is shared "
                                                    "(Laplace of scale 2 gamma / noise_var; above 0)")
    gamma: float = Field(1e-5, gt=0, description="The clip: what is compared and what is shared lies in "
                                                 "[-gamma, gamma]")
    tau: float = Field(1e-6, ge=0, description="The threshold, before its noise")
    replace: bool = Field(True, description="Whether the shared entries are drawn from the accepted ones with "
                                            "replacement (FLARE's default), so fewer than the fraction may be shared")


MAX_PASSES = 10_000
"""Passes over the entries not yet accepted before giving up (FLARE loops for ever): with tau far above gamma, an
entry passes the threshold with a vanishing probability."""


def svt_update(update: Update, args: SvtPrivacyArgs, rng: np.random.Generator) -> Update:
    """`update` through the sparse vector technique, with noise from `rng` (drawn in the order the module says)."""
    names = sorted(update)
    w = flat(update, names)
    if w.size == 0:
        return dict(update)
    k = min(math.ceil(w.size * args.fraction), w.size)
    threshold = args.tau + rng.laplace(scale=2.0 * args.gamma / args.epsilon)
    lambda_nu = 4.0 * args.gamma * k / (args.epsilon * (2.0 * k) ** (2.0 / 3.0))
    clipped = np.abs(np.clip(w, -args.gamma, args.gamma))
    accepted: list[np.ndarray] = []  # each pass's, in order: FLARE's list of indices, as arrays
    count = 0
    candidates = np.arange(w.size)
    for _ in range(MAX_PASSES):
        above = clipped[candidates] + rng.laplace(scale=lambda_nu, size=candidates.shape) >= threshold
        accepted.append(candidates[above])
        count += int(above.sum())
        candidates = candidates[~above]
        if count >= k:
            break
    else:
        raise ValueError(f"only {count} of {k} entries passed the noisy threshold in {MAX_PASSES} passes; "
                         "tau is too large for gamma and epsilon")
    chosen = rng.choice(np.concatenate(accepted), size=k, replace=args.replace)
    noise = rng.laplace(scale=2.0 * args.gamma / args.noise_var, size=chosen.shape)
    shared = np.zeros_like(w)
    shared[chosen] = np.clip(w[chosen] + noise, -args.gamma, args.gamma)
    return unflat(shared, update, names)


class SvtPrivacy(Filter):
    """The sparse vector technique on a result's update."""

    type_name: ClassVar[str] = "svt_privacy"
    Args: ClassVar[type[FilterArgs]] = SvtPrivacyArgs
    directions: ClassVar[frozenset[Direction]] = frozenset(("result",))
    needs_received: ClassVar[bool] = True

    def __init__(self, args: FilterArgs, rng: np.random.Generator | None = None) -> None:
        if not isinstance(args, SvtPrivacyArgs):
            raise TypeError(f"svt_privacy needs SvtPrivacyArgs, not {type(args).__name__}")
        super().__init__(args)
        self.settings = args
        self.rng = rng or np.random.default_rng()
        """Where the noise comes from: seeded by the OS (a test passes a seeded one)."""

    def filter_result(self, result: TaskResult, ctx: FilterContext) -> TaskResult:
        if ctx.task_kind == TaskKind.AGGREGATE:
            return own_aggregate(result, ctx.received, ctx.task_meta)
        if not carries_update(result, ctx.task_kind):
            return result
        update = svt_update(update_of(result, ctx.received), self.settings, self.rng)
        return replace(result, params=params_with(result, ctx.received, update))
