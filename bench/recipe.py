"""The Recipe API's cost: the same job run by `flctl simulate` and by `FedAvgJob(...).run(SimEnv(...))`.

The job is hello-numpy (playbooks/jobs/hello-numpy: FedAvg, 3 rounds) at 2 sites, 2 workers. Three figures,
each the median of --repeats runs, taken alternately:
- `flctl simulate`: wall time of the command, spawn to exit (a fresh interpreter, its imports included);
- `python recipe.py`: wall time of a script that builds the job with `flctl.recipe` and runs it in `SimEnv`,
  spawn to exit (the same simulation, plus building, exporting and checking the job folder);
- the API's own overhead, in one process: `job.run(SimEnv(...))`'s wall time minus the simulation's own
  (`SimulationResult.wall_s`, what `flctl simulate` reports): building nothing, exporting, checking.

    .venv/bin/python bench/recipe.py [--repeats 5] [--json out.json]
    .venv/bin/python bench/recipe.py --nvflare-python VENV/bin/python   # also NVIDIA FLARE's recipe SimEnv

With --nvflare-python (an interpreter with nvflare 2.9.0: `python -m venv V && V/bin/pip install nvflare==2.9.0`),
a fourth figure: NVIDIA FLARE's own Recipe API on the same job, `NumpyFedAvgRecipe(...).execute(SimEnv(
num_clients=2, num_threads=2))`, spawn to exit, its client script doing hello-numpy's step with
`nvflare.client` (one 4x4 array: FLARE's numpy persistor holds one array, hello-numpy two).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "playbooks" / "jobs" / "hello-numpy"
FLCTL = str(Path(sys.executable).parent / "flctl")
RECIPE = """
import sys
from flctl.recipe import FedAvgJob, SimEnv

job = FedAvgJob(name="hello-numpy", script=sys.argv[1], rounds=3, round_timeout_s=60, min_sites=2)
run = job.run(SimEnv(sites=2, workers=2, workspace=sys.argv[2]))
assert run.status() == "FINISHED", run.error
"""


NVFLARE_CLIENT = """
import numpy as np
import nvflare.client as flare

flare.init()
site = flare.get_site_name()
rng = np.random.default_rng(sum(site.encode()))
target = (1.0 + 0.1 * rng.standard_normal((4, 4))).astype(np.float32)
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    params = {k: (v + 0.5 * (target - v)).astype(np.float32) for k, v in model.params.items()}
    flare.send(flare.FLModel(params=params, params_type="FULL", metrics={"loss": 0.0},
                             meta={"NUM_STEPS_CURRENT_ROUND": 10}))
"""
NVFLARE_RECIPE = """
import os
import sys

import numpy as np
from nvflare.app_common.np.recipes.fedavg import NumpyFedAvgRecipe
from nvflare.recipe import SimEnv

client, workspace = sys.argv[1], sys.argv[2]
os.makedirs(workspace, exist_ok=True)
initial = os.path.join(workspace, "initial.npy")
np.save(initial, np.zeros((4, 4), np.float32))
recipe = NumpyFedAvgRecipe(name="hello-numpy", initial_ckpt=initial, min_clients=2, num_rounds=3,
                           train_script=client)
recipe.execute(SimEnv(num_clients=2, num_threads=2, workspace_root=workspace))
"""


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - began


def in_process_overhead(workspace: Path) -> float:
    """One SimEnv run in this process: its wall time less the simulation's own."""
    from flctl.recipe import FedAvgJob, SimEnv

    job = FedAvgJob(name="hello-numpy", script=JOB / "app" / "train.py", rounds=3, round_timeout_s=60, min_sites=2)
    began = time.perf_counter()
    run = job.run(SimEnv(sites=2, workers=2, workspace=workspace))
    wall = time.perf_counter() - began
    assert run.status() == "FINISHED", run.error
    return wall - run.result.wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--nvflare-python", type=Path, help="an interpreter with nvflare installed")
    args = parser.parse_args()
    cli, script, overhead, nvflare = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "recipe.py"
        recipe.write_text(RECIPE)
        (Path(tmp) / "nvflare_client.py").write_text(NVFLARE_CLIENT)
        (Path(tmp) / "nvflare_recipe.py").write_text(NVFLARE_RECIPE)
        in_process_overhead(Path(tmp) / "warm")  # imports and page cache
        for repeat in range(args.repeats + (1 if args.nvflare_python else 0)):
            if args.nvflare_python:  # its first run (imports, page cache) is not counted
                took = timed([str(args.nvflare_python), f"{tmp}/nvflare_recipe.py", f"{tmp}/nvflare_client.py",
                              f"{tmp}/nvflare-{repeat}"])
                if repeat == 0:
                    continue
                nvflare.append(took)
            cli.append(timed([FLCTL, "simulate", str(JOB), "-n", "2", "--workers", "2", "-w", f"{tmp}/cli",
                              "--json"]))
            script.append(timed([sys.executable, str(recipe), str(JOB / "app" / "train.py"), f"{tmp}/recipe"]))
            overhead.append(in_process_overhead(Path(tmp) / "api"))
    figures: dict[str, object] = {
        "flctl_simulate_s": median(cli), "recipe_script_s": median(script),
        "api_overhead_s": median(overhead), "repeats": args.repeats,
        "runs": {"flctl_simulate_s": cli, "recipe_script_s": script, "api_overhead_s": overhead}}
    if nvflare:
        figures["nvflare_recipe_s"] = median(nvflare)
        figures["runs"]["nvflare_recipe_s"] = nvflare  # type: ignore[index]
    print(f"hello-numpy, 2 sites, 2 workers, median of {args.repeats} (alternating):")
    print(f"  flctl simulate          {figures['flctl_simulate_s']:.3f} s  (spawn to exit)")
    print(f"  python recipe.py        {figures['recipe_script_s']:.3f} s  (spawn to exit, FedAvgJob + SimEnv)")
    print(f"  Recipe API overhead     {figures['api_overhead_s']:.3f} s  (in one process: run() less the "
          "simulation's own wall time)")
    if nvflare:
        print(f"  NVIDIA FLARE recipe     {figures['nvflare_recipe_s']:.3f} s  (spawn to exit, NumpyFedAvgRecipe + "
              "SimEnv)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
