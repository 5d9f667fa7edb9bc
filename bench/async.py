"""Asynchronous FL (FedBuff) against synchronous FedAvg: the time to a fixed number of server updates when the
sites' speeds spread 1x-10x.

N simulated sites, each in a simulator worker of its own (`flctl simulate --workers N`), run the `fedbuff` example's
script (playbooks/jobs/fedbuff/app): site-i sleeps STEP_S x (1 + (i - 1) % 10) per task, then moves the model half
way to its own target. The same app runs twice from the same initial model:

- `fedavg`, `rounds: U`: each update waits for every site, so for the slowest (10 x STEP_S);
- `fedbuff`, `updates: U`, `buffer_size: K`: the server steps every K answers, whoever sends them.

For each: seconds from the first update to the (U+1)-th, U more updates once every site's script is running (the
start-up, the same for both, left out; it is in `wall_s`), the updates per second, and how far the final model is
from the sites' mean target (where FedAvg's model goes; FedBuff's leans towards the fast sites, which answer more
often); and how far FedAvg's model was at the time FedBuff had made its U updates.

    .venv/bin/python bench/async.py                                    # 10 sites, 20 updates, K = 5, STEP_S 0.1
    .venv/bin/python bench/async.py --sites 10 --updates 20 --buffer 5 --step-s 0.1 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "playbooks" / "jobs" / "fedbuff" / "app"


class Clock:
    """A simulation observer that notes when each update (round) completes."""

    def __init__(self) -> None:
        self.updates: list[float] = []

    def round_done(self, round_no: int, rounds: int, metrics: dict[str, dict[str, float]]) -> None:
        self.updates.append(time.monotonic())

    def site_answered(self, round_no: int, answered: int, asked: int) -> None:
        pass

    def log(self, line: str) -> None:
        pass


def make_job(root: Path, name: str, workflow: str, args: dict[str, Any], step_s: float) -> Path:
    folder = root / name
    shutil.copytree(APP, folder / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: {name}\nworkflow: {{type: {workflow}, args: {json.dumps(args)}}}\nsites: all\n"
        f"min_sites: 1\napp: {{command: [python, train.py], env: {{STEP_S: '{step_s}'}}}}\n"
        "initial_model: app/model.py:initial_params\n")
    return folder


def distance_to_mean_target(model_file: Path, sites: list[str]) -> float:
    """Root-mean-square distance of a saved model from the mean of the sites' targets."""
    import numpy as np
    from safetensors.numpy import load_file

    sys.path.insert(0, str(APP))
    try:
        from train import site_target  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(APP))
    model = load_file(model_file)
    targets = [site_target(site) for site in sites]
    squares = [np.mean((model[name] - np.mean([t[name] for t in targets], axis=0)) ** 2) for name in model]
    return float(np.sqrt(np.mean(squares)))


def run(root: Path, workflow: str, args: dict[str, Any], sites: list[str], step_s: float) -> dict[str, Any]:
    from flctl.node.jobs.job_spec import load_job
    from flctl.node.simulator.runtime import simulate

    clock = Clock()
    job = load_job(make_job(root, workflow, workflow, args, step_s))
    result = simulate(job, sites, root / "ws", workers=len(sites), observer=clock)
    if result.status != "FINISHED" or len(clock.updates) < 2:
        raise SystemExit(f"{workflow}: {result.status}: {result.error}")
    seconds = clock.updates[-1] - clock.updates[0]
    return {"workflow": workflow, "updates": len(clock.updates) - 1, "seconds": round(seconds, 3),
            "updates_per_s": round((len(clock.updates) - 1) / seconds, 2), "wall_s": round(result.wall_s, 2),
            "rms_to_mean_target": round(distance_to_mean_target(result.job_dir / "models" / "final.safetensors",
                                                                sites), 5),
            "curve": [(round(at - clock.updates[0], 3), distance_to_mean_target(
                result.job_dir / "models" / f"round-{n}.safetensors", sites)) for n, at in enumerate(clock.updates)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--buffer", type=int, default=5, help="FedBuff's buffer_size K")
    parser.add_argument("--max-staleness", type=int, default=None)
    parser.add_argument("--step-s", type=float, default=0.1, help="site-1's seconds per task (site-10: 10x)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every run here")
    opts = parser.parse_args()
    sites = [f"site-{i}" for i in range(1, opts.sites + 1)]
    total = opts.updates + 1  # the first update ends the start-up; the next U are timed
    fedbuff_args: dict[str, Any] = {"updates": total, "buffer_size": opts.buffer, "site_timeout_s": 600}
    if opts.max_staleness is not None:
        fedbuff_args["max_staleness"] = opts.max_staleness
    plans = [("fedavg", {"rounds": total, "round_timeout_s": 600}), ("fedbuff", fedbuff_args)]
    runs: list[dict[str, Any]] = []
    for repeat in range(opts.repeats):
        for workflow, args in plans:
            with tempfile.TemporaryDirectory(prefix="flctl-async-") as tmp:
                figures = run(Path(tmp), workflow, args, sites, opts.step_s)
            runs.append({"repeat": repeat, **figures})
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)
    print(f"\n{opts.sites} sites, speeds 1x-{min(opts.sites, 10)}x (site-1 {opts.step_s:g} s a task), "
          f"{opts.updates} updates, FedBuff K = {opts.buffer}:")
    for workflow, _ in plans:
        mine = [r for r in runs if r["workflow"] == workflow]
        secs = [r["seconds"] for r in mine]
        print(f"  {workflow:8s} {min(secs):7.2f}-{max(secs):.2f} s to {opts.updates} updates "
              f"(median {statistics.median(secs):.2f}), {statistics.median(r['updates_per_s'] for r in mine):.2f} "
              f"updates/s, final model {statistics.median(r['rms_to_mean_target'] for r in mine):.4f} RMS from "
              "the sites' mean target")
    fedavg = [r for r in runs if r["workflow"] == "fedavg"]
    fedbuff_s = statistics.median(r["seconds"] for r in runs if r["workflow"] == "fedbuff")
    at = [max((p for p in r["curve"] if p[0] <= fedbuff_s), key=lambda p: p[0]) for r in fedavg]
    print(f"  fedavg's model at fedbuff's median time ({fedbuff_s:.2f} s after the first update): "
          f"{statistics.median(rms for _, rms in at):.4f} RMS from the sites' mean target, "
          f"{statistics.median(sum(1 for p in r['curve'] if 0 < p[0] <= fedbuff_s) for r in fedavg)} updates")
    if opts.json:
        opts.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
