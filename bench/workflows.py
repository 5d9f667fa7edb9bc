"""Every workflow's cost beside FedAvg's: 8 simulated sites, 10 rounds, a 10,000-parameter float32 model.

Two figures per workflow:
- wall: `flctl simulate JOB -n 8` from spawn to exit, divided by the rounds (what a user waits for a round;
  the sites' near-zero training, w + 0.001 plus a little noise, makes it mostly flctl's own cost);
- server: the workflow's own time per round with the same 8 sites answering at once in memory (no processes,
  no I/O): aggregation, the server optimizer, checkpoints to a throwaway dict. This is the server's overhead.

Each is printed with its ratio to FedAvg's (the goal: within 1.5x). Cyclic visits the 8 sites one after
another, so its wall time per round is that of 8 sequential trips, by design; its server figure is comparable.

Then the non-IID comparison: the example jobs playbooks/jobs/noniid/{fedavg,fedprox,fedopt,scaffold}.yml, as they
are but for the rounds (--noniid-rounds) and without their evaluate tasks, each run once with `flctl simulate -n 3`;
every round's global model (models/round-N.safetensors) is scored on a class-balanced test set no site holds
(the example's data.balanced_test), and the bench prints the first round that reaches each --accuracy (needs torch).

    .venv/bin/python bench/workflows.py                    # 3 repeats, min-max and medians; then non-IID
    .venv/bin/python bench/workflows.py --repeats 5 --json out.json
    .venv/bin/python bench/workflows.py --noniid-only --noniid-rounds 30 --accuracy 0.8 0.85 0.9

Run it with the interpreter that has flctl installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flctl.node.client.swarm import weighted_mean
from flctl.node.jobs.tasks import SCAFFOLD_C, SCAFFOLD_DC, Params, SiteFailure, Task, TaskResult
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.state import WorkflowState

PARAMS = 10_000
ROUNDS = 10
SITES = 8
FLCTL = str(Path(sys.executable).parent / "flctl")
CASES: dict[str, tuple[str, dict[str, Any]]] = {  # name: (workflow type, its arguments besides rounds)
    "fedavg": ("fedavg", {"round_timeout_s": 60}),
    "fedavgm": ("fedavgm", {"round_timeout_s": 60, "server_momentum": 0.9}),
    "fedopt-sgdm": ("fedopt", {"round_timeout_s": 60, "optimizer": "sgdm", "momentum": 0.9}),
    "fedopt-adam": ("fedopt", {"round_timeout_s": 60, "optimizer": "adam"}),
    "fedopt-yogi": ("fedopt", {"round_timeout_s": 60, "optimizer": "yogi"}),
    "fedopt-adagrad": ("fedopt", {"round_timeout_s": 60, "optimizer": "adagrad"}),
    "cyclic": ("cyclic", {"site_timeout_s": 60}),
    "scaffold": ("scaffold", {"round_timeout_s": 60}),
    "swarm": ("swarm", {"round_timeout_s": 60}),
}
SCRIPT = """
import numpy as np
import flctl.client as fl

fl.init()
rng = np.random.default_rng(sum(fl.site_name().encode()))
while fl.running():
    model = fl.receive()
    params = model.params or {"w": np.zeros(%(params)d, np.float32)}
    new = {k: v + np.float32(0.001) + rng.normal(0, 1e-3, v.shape).astype(np.float32) for k, v in params.items()}
    if %(scaffold)s:  # SCAFFOLD's control update, zero here: the server's side of it is what is measured
        new.update({"@scaffold_dc/" + k: np.zeros_like(v) for k, v in params.items()})
    fl.send(fl.Model(params=new, metrics={"loss": 0.5}, num_examples=1))
"""


def job_folder(root: Path, name: str, workflow: str, args: dict[str, Any]) -> Path:
    job = root / name
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(SCRIPT % {"params": PARAMS, "scaffold": workflow == "scaffold"})
    (job / "job.yml").write_text(textwrap.dedent(f"""\
        api_version: 1
        name: bench-{name}
        workflow: {{type: {workflow}, args: {json.dumps({"rounds": ROUNDS, **args})}}}
        min_sites: {SITES}
        app: {{command: [python, train.py]}}
        """))
    return job


def wall_per_round(job: Path, workspace: Path) -> float:
    start = time.perf_counter()
    run = subprocess.run([FLCTL, "--quiet", "simulate", str(job), "-n", str(SITES), "-w", str(workspace)],
                         capture_output=True, text=True, timeout=600, check=False)
    took = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"flctl simulate {job.name} exited {run.returncode}: {run.stderr.strip()}")
    return took / ROUNDS


class InstantFederation:
    """Sites answer at once from memory; models and states go to a dict (the server's own work only)."""

    job_id = "bench"

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.kept: dict[str, object] = {}

    def sites(self) -> list[str]:
        return [f"site-{i}" for i in range(1, SITES + 1)]

    def send(self, task: Task, sites: Sequence[str], timeout_s: float) -> Iterator[TaskResult | SiteFailure]:
        if task.kind == "aggregate":  # a swarm's aggregator, as its Client API answers
            yield TaskResult(sites[0], weighted_mean(task.params, task.meta["weights"]), 1)
            return
        base = task.params.get("w", np.zeros(PARAMS, np.float32))
        for site in sites:
            noise = self.rng.normal(0, 1e-3, PARAMS).astype(np.float32)
            params = {"w": base + np.float32(0.001) + noise}
            if SCAFFOLD_C + "w" in task.params:
                params[SCAFFOLD_DC + "w"] = np.zeros(PARAMS, np.float32)
            yield TaskResult(site, params, 1, {"loss": 0.5})

    def save_model(self, name: str, params: Params, saved_as: str = "") -> None:
        self.kept[name] = params

    def save_state(self, name: str, state: WorkflowState) -> None:
        self.kept[f"state {name}"] = state

    def record_round(self, round_no: int, metrics: dict[str, dict[str, float]]) -> None:
        pass

    def log(self, message: str) -> None:
        pass


def server_per_round(workflow: str, args: dict[str, Any]) -> float:
    cls = WORKFLOWS[workflow]
    instance: Any = cls(cls.parse_args({"rounds": ROUNDS, **args}))
    start = time.perf_counter()
    instance.run(InstantFederation(), {"w": np.zeros(PARAMS, np.float32)})
    return (time.perf_counter() - start) / ROUNDS


NONIID = Path(__file__).resolve().parents[1] / "playbooks" / "jobs" / "noniid"
NONIID_CASES = {"fedavg": "fedavg.yml", "fedprox": "fedprox.yml", "fedopt-adam": "fedopt.yml",
                "scaffold": "scaffold.yml"}


def noniid_job(root: Path, example: str, rounds: int) -> Path:
    """A copy of the example job file `example` (and its app/) under `root`, with `rounds` rounds, no evaluation."""
    import shutil

    import yaml

    if not (root / "app").is_dir():
        shutil.copytree(NONIID / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((NONIID / example).read_text())
    spec["workflow"]["args"].update(rounds=rounds, evaluate_every=0)
    job = root / example
    job.write_text(yaml.safe_dump(spec, sort_keys=False))
    return job


def balanced_accuracy(app: Path) -> Any:
    """A function: a model's params -> its accuracy on the example's class-balanced test set."""
    import importlib

    import torch

    sys.path.insert(0, str(app))
    data, train = importlib.import_module("data"), importlib.import_module("train")  # the example's own modules
    torch.set_num_threads(1)
    x, y = data.balanced_test()
    return lambda params: train.evaluate(train.load(params), x, y)["accuracy"]


def noniid(rounds: int, targets: list[float]) -> dict[str, list[float]]:
    """Each case's balanced accuracy after every round; prints the rounds each needed to reach each target."""
    from safetensors.numpy import load_file

    curves: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="flctl-bench-noniid-") as tmp:
        root = Path(tmp)
        score = None
        for name, example in NONIID_CASES.items():
            job = noniid_job(root / "noniid", example, rounds)
            run = subprocess.run([FLCTL, "--quiet", "simulate", str(job), "-n", "3", "-w", str(root / "ws")],
                                 capture_output=True, text=True, timeout=600, check=False)
            if run.returncode != 0:
                raise SystemExit(f"flctl simulate {job.name} exited {run.returncode}: {run.stderr.strip()}")
            score = score or balanced_accuracy(root / "noniid" / "app")
            models = root / "ws" / f"noniid-{job.stem}" / "models"
            curves[name] = [score(load_file(str(models / f"round-{r}.safetensors"))) for r in range(rounds)]
    print(f"\nnon-IID (3 sites, Dirichlet alpha 0.3, {rounds} rounds): first round whose global model reaches "
          "the accuracy on a class-balanced test set (-: never)")
    print(f"{'workflow':<14}" + "".join(f"{f'{t:.0%}':>8}" for t in targets) + f"{'last':>8}{'best':>8}")
    for name, curve in curves.items():
        reached = [next((str(r + 1) for r, a in enumerate(curve) if a >= t), "-") for t in targets]
        print(f"{name:<14}" + "".join(f"{r:>8}" for r in reached) + f"{curve[-1]:>8.3f}{max(curve):>8.3f}")
    return curves


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--skip-noniid", action="store_true", help="only the per-round costs")
    parser.add_argument("--noniid-only", action="store_true", help="only the non-IID comparison")
    parser.add_argument("--noniid-rounds", type=int, default=30)
    parser.add_argument("--accuracy", type=float, nargs="+", default=[0.8, 0.85, 0.9],
                        help="the accuracies whose rounds the non-IID comparison prints")
    opts = parser.parse_args()
    result: dict[str, Any] = {}
    if not opts.noniid_only:
        result["cost"] = costs(opts.repeats)
    if not opts.skip_noniid:
        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
        result["noniid"] = noniid(opts.noniid_rounds, opts.accuracy)
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2))
    return 0


def costs(repeats: int) -> dict[str, dict[str, list[float]]]:
    """Every workflow's wall time and server time per round, printed beside FedAvg's."""
    print(f"{SITES} sites, {ROUNDS} rounds, {PARAMS:,} float32 parameters; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="flctl-bench-workflows-") as tmp:
        root = Path(tmp)
        warm = job_folder(root / "jobs", "warm-up", "fedavg", {})  # caches and imports warm before the first figure
        wall_per_round(warm, root / "ws-warm-up")
        server_per_round("fedavg", {})
        for name, (workflow, args) in CASES.items():
            job = job_folder(root / "jobs", name, workflow, args)
            walls = [wall_per_round(job, root / f"ws-{name}-{i}") for i in range(repeats)]
            servers = [server_per_round(workflow, args) for _ in range(repeats)]
            figures[name] = {"wall_s": walls, "server_s": servers}
            print(f"  {name}: wall {min(walls):.3f}-{max(walls):.3f} s/round, server "
                  f"{min(servers) * 1e3:.2f}-{max(servers) * 1e3:.2f} ms/round", flush=True)
    base_wall = statistics.median(figures["fedavg"]["wall_s"])
    base_server = statistics.median(figures["fedavg"]["server_s"])
    print(f"\n{'workflow':<16}{'wall s/round':>16}{'x fedavg':>10}{'server ms/round':>18}{'x fedavg':>10}")
    for name, got in figures.items():
        wall, server = statistics.median(got["wall_s"]), statistics.median(got["server_s"])
        print(f"{name:<16}{wall:>16.3f}{wall / base_wall:>10.2f}{server * 1e3:>18.2f}{server / base_server:>10.2f}")
    return figures


if __name__ == "__main__":
    sys.exit(main())
