"""The Recipe API's cost: the same job run by `flctl simulate` and by `FedAvgJob(...).run(SimEnv(...))`.

The job is hello-numpy (playbooks/jobs/hello-numpy: FedAvg, 3 rounds) at 2 sites, 2 workers. Three figures,
each the median of --repeats runs, taken alternately:
- `flctl simulate`: wall time of the command, spawn to exit (a fresh interpreter, its imports included);
- `python recipe.py`: wall time of a script that builds the job with `flctl.recipe` and runs it in `SimEnv`,
  spawn to exit (the same simulation, plus building, exporting and checking the job folder);
- the API's own overhead, in one process: `job.run(SimEnv(...))`'s wall time minus the simulation's own
  (`SimulationResult.wall_s`, what `flctl simulate` reports): building nothing, exporting, checking.

    .venv/bin/python bench/recipe.py [--repeats 5] [--json out.json]
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
    args = parser.parse_args()
    cli, script, overhead = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "recipe.py"
        recipe.write_text(RECIPE)
        in_process_overhead(Path(tmp) / "warm")  # imports and page cache
        for _ in range(args.repeats):
            cli.append(timed([FLCTL, "simulate", str(JOB), "-n", "2", "--workers", "2", "-w", f"{tmp}/cli",
                              "--json"]))
            script.append(timed([sys.executable, str(recipe), str(JOB / "app" / "train.py"), f"{tmp}/recipe"]))
            overhead.append(in_process_overhead(Path(tmp) / "api"))
    figures = {"flctl_simulate_s": statistics.median(cli), "recipe_script_s": statistics.median(script),
               "api_overhead_s": statistics.median(overhead), "repeats": args.repeats,
               "runs": {"flctl_simulate_s": cli, "recipe_script_s": script, "api_overhead_s": overhead}}
    print(f"hello-numpy, 2 sites, 2 workers, median of {args.repeats} (alternating):")
    print(f"  flctl simulate          {figures['flctl_simulate_s']:.3f} s  (spawn to exit)")
    print(f"  python recipe.py        {figures['recipe_script_s']:.3f} s  (spawn to exit, FedAvgJob + SimEnv)")
    print(f"  Recipe API overhead     {figures['api_overhead_s']:.3f} s  (in one process: run() less the "
          "simulation's own wall time)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
