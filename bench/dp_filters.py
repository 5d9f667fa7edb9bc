"""What a site's DP filters cost a round: the pipeline's task_in + result_out on a model of --size float32 numbers
(default 10 million, 40 MB), for each filter of the update, beside the same pipeline with no filter (the fast path:
the bytes pass as they are) and with exclude_vars (decoded and encoded, nothing computed).

Each configuration runs --repeats times (default 5), alternating; the figure is the median seconds per round (task
in, result out) at the site, in this process. The result is the task's model plus a fixed change, answered as a
full model (the filters subtract the task's model, filter the update, add it back).

    .venv/bin/python bench/dp_filters.py
    .venv/bin/python bench/dp_filters.py --size 1000000 --repeats 7
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from flctl.node.client import api_wire as wire
from flctl.node.config.privacy import FilterEntry, PrivacyRules
from flctl.node.jobs.tasks import Task, TaskKind
from flctl.node.wire import tensors

CONFIGS: dict[str, list[dict[str, Any]]] = {
    "none (fast path)": [],
    "exclude_vars": [{"filter": "exclude_vars", "args": {"exclude_vars": ["not.there"]}}],
    "percentile_privacy": [{"filter": "percentile_privacy", "args": {"percentile": 90, "gamma": 0.01}}],
    "svt_privacy": [{"filter": "svt_privacy", "args": {"fraction": 0.1, "epsilon": 0.1, "noise_var": 0.1,
                                                       "gamma": 1e-5}}],
    "gaussian_dp": [{"filter": "gaussian_dp", "args": {"clip_norm": 1.0, "noise_multiplier": 1.0}}],
}


def one_round(entries: list[dict[str, Any]], task_bytes: bytes, result_bytes: bytes) -> float:
    """Seconds for one task in and one result out through a pipeline of `entries`."""
    rules = PrivacyRules(scopes={"public": [], "bench": [FilterEntry(**e) for e in entries]})
    filters = rules.pipeline("bench", "bench")
    task = Task(TaskKind.TRAIN, 1, {}, {})
    began = time.perf_counter()
    filters.task_in(task, task_bytes, "site-1")
    filters.result_out(task, wire.Result(1, 1), result_bytes, "site-1")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000_000, help="float32 numbers in the model")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    half = args.size // 2
    model = {"layer.weight": rng.normal(0, 1, half).astype(np.float32),
             "head.weight": rng.normal(0, 1, args.size - half).astype(np.float32)}
    trained = {name: value + rng.normal(0, 0.01, value.shape).astype(np.float32) for name, value in model.items()}
    task_bytes, result_bytes = tensors.encode(model), tensors.encode(trained)
    one_round(CONFIGS["gaussian_dp"], task_bytes, result_bytes)  # warm: Opacus's analysis loaded once
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name, entries in CONFIGS.items():
            times[name].append(one_round(entries, task_bytes, result_bytes))
    print(f"site filters on a {args.size * 4 / 1e6:.0f} MB float32 model ({args.size:,} numbers), median of "
          f"{args.repeats} rounds (task in + result out):")
    for name, values in times.items():
        print(f"  {name:20s} {float(np.median(values)):7.3f} s")


if __name__ == "__main__":
    main()
