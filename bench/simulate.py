"""Simulator and local-federation speed, side by side with NVIDIA FLARE and Flower.

One FedAvg job: a 10,000-parameter float32 model, 10 rounds, near-zero training (w + 0.001), at
2, 8 and 32 sites. Each framework runs it in its own simulator: `flctl simulate`, NVIDIA FLARE's
SimEnv (nvflare 2.9.0) and Flower's run_simulation (flwr[simulation] 1.42.0), the peers in virtual
environments this script creates. For each run: wall time from spawn to exit and the peak of the
summed RSS of the whole process tree (sampled from /proc every 50 ms). Then the same job on a local
federation (`flctl poc`, real processes, mTLS): start, submit to finished, per round, stop.

    .venv/bin/python bench/simulate.py                 # flctl only (seconds)
    .venv/bin/python bench/simulate.py --peers         # also NVIDIA FLARE and Flower (creates venvs; minutes)
    .venv/bin/python bench/simulate.py --sites 2 8 --repeats 3 --json out.json
    .venv/bin/python bench/simulate.py --poc-only --repeats 3   # the local federation alone, each run and the range
    .venv/bin/python bench/simulate.py --engine ray   # flctl --engine ray beside the local engine and Flower's Ray

With --engine ray: a hello-numpy-sized model (20 parameters), 3 rounds, at 100, 1,000 and 10,000 sites, run by
`flctl simulate` (its local engine), `flctl simulate --engine ray` (a local Ray it starts) and Flower 1.42's
run_simulation (its Ray backend), one after the other in the same run.

Standard library only; run it with the interpreter that has flctl installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

PARAMS = 10_000
ROUNDS = 10
FLCTL = str(Path(sys.executable).parent / "flctl")
PEERS = {"nvflare": "nvflare==2.9.0", "flwr": "flwr[simulation]==1.42.0"}

FLCTL_SCRIPT = """
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    params = model.params or {"w": np.random.default_rng(0).standard_normal(%(params)d).astype(np.float32)}
    fl.send(fl.Model(params={k: v + np.float32(0.001) for k, v in params.items()}, metrics={"accuracy": 0.5},
                     num_examples=1))
"""

NVFLARE_JOB = """
import os, sys
import numpy as np
from nvflare.app_common.np.recipes.fedavg import NumpyFedAvgRecipe
from nvflare.recipe import SimEnv

n, rounds, params, ws = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.makedirs(ws, exist_ok=True)
ckpt = os.path.join(ws, "init.npy")
np.save(ckpt, np.random.default_rng(0).standard_normal(params).astype(np.float32))
recipe = NumpyFedAvgRecipe(name=f"bench_n{n}", initial_ckpt=ckpt, min_clients=n, num_rounds=rounds,
                           train_script=os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py"))
recipe.execute(SimEnv(num_clients=n, num_threads=n, workspace_root=ws))
"""

NVFLARE_CLIENT = """
import nvflare.client as flare

flare.init()
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    flare.send(flare.FLModel(params={k: v + 0.001 for k, v in model.params.items()}, params_type="FULL",
                             metrics={"accuracy": 0.5}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
"""

FLWR_APP = """
import os
import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context):
    new = [a + np.float32(0.001) for a in msg.content["arrays"].to_numpy_ndarrays()]
    reply = RecordDict({"arrays": ArrayRecord(new), "metrics": MetricRecord({"num-examples": 1, "accuracy": 0.5})})
    return Message(content=reply, reply_to=msg)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    n, rounds, params = (int(os.environ[k]) for k in ("BENCH_N", "BENCH_ROUNDS", "BENCH_PARAMS"))
    init = np.random.default_rng(0).standard_normal(params).astype(np.float32)
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
    strategy.start(grid=grid, initial_arrays=ArrayRecord([init]), num_rounds=rounds)
"""

FLWR_RUN = """
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flwr.simulation import run_simulation
from app import client_app, server_app

run_simulation(server_app=server_app, client_app=client_app, num_supernodes=int(os.environ["BENCH_N"]))
"""


# -- measuring -------------------------------------------------------------------------------------------------

def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, todo = {root}, [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def measure(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600,
            cwd: str | None = None) -> dict[str, Any]:
    """Run `cmd`; wall seconds, peak RSS of its process tree (MB), exit code and the tail of its output."""
    with tempfile.TemporaryFile() as out:
        began = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _rss_mb(_tree(proc.pid)))
            if time.monotonic() - began > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.05)  # sampling memory, not moving the run along
        wall = time.monotonic() - began
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the run left behind
        out.seek(0)
        tail = out.read().decode(errors="replace")[-1500:]
    return {"wall_s": round(wall, 3), "peak_rss_mb": round(peak, 1), "rc": proc.returncode, "tail": tail}


# -- the frameworks --------------------------------------------------------------------------------------------

def flctl_job(root: Path, sites: int, params: int = PARAMS, rounds: int = ROUNDS) -> Path:
    job = root / f"bench-{sites}"
    (job / "app").mkdir(parents=True, exist_ok=True)
    (job / "app" / "train.py").write_text(FLCTL_SCRIPT % {"params": params})
    (job / "job.yml").write_text(f"api_version: 1\nname: bench-{sites}\nworkflow: {{type: fedavg, args: "
                                 f"{{rounds: {rounds}, round_timeout_s: 3600}}}}\nmin_sites: {sites}\n")
    return job


def run_flctl(root: Path, sites: int, params: int = PARAMS, rounds: int = ROUNDS, engine: str = "local",
              timeout: float = 600) -> dict[str, Any]:
    env = {**os.environ, "FLCTL_RAY_OBJECT_STORE_MB": os.environ.get("FLCTL_RAY_OBJECT_STORE_MB", "500")}
    return measure([FLCTL, "simulate", str(flctl_job(root, sites, params, rounds)), "-n", str(sites), "-w",
                    str(root / "sim"), "--engine", engine], env=env, timeout=timeout)


def make_venv(venvs: Path, name: str) -> Path:
    venv = venvs / f"venv-{name}"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {PEERS[name]} (a few minutes)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PEERS[name]], check=True)
    return python


def run_nvflare(root: Path, python: Path, sites: int) -> dict[str, Any]:
    folder = root / "nvflare"
    folder.mkdir(exist_ok=True)
    (folder / "job.py").write_text(textwrap.dedent(NVFLARE_JOB))
    (folder / "client.py").write_text(textwrap.dedent(NVFLARE_CLIENT))
    ws = root / f"nvflare-ws-{sites}"
    shutil.rmtree(ws, ignore_errors=True)
    env = {**os.environ, "TMPDIR": str(root), "VIRTUAL_ENV": str(python.parent.parent),
           "PATH": f"{python.parent}:{os.environ.get('PATH', '')}"}
    return measure([str(python), str(folder / "job.py"), str(sites), str(ROUNDS), str(PARAMS), str(ws)], env=env,
                   cwd=str(folder))


def run_flwr(root: Path, python: Path, sites: int, params: int = PARAMS, rounds: int = ROUNDS,
             timeout: float = 600) -> dict[str, Any]:
    folder = root / "flwr"
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text(textwrap.dedent(FLWR_APP))
    (folder / "run.py").write_text(textwrap.dedent(FLWR_RUN))
    env = {**os.environ, "BENCH_N": str(sites), "BENCH_ROUNDS": str(rounds), "BENCH_PARAMS": str(params),
           "FLWR_TELEMETRY_ENABLED": "0", "FLWR_HOME": str(root / "flwr-home"), "RAY_TMPDIR": str(root / "ray"),
           "PYTHONPATH": str(folder), "PATH": f"{python.parent}:{os.environ.get('PATH', '')}"}
    (root / "ray").mkdir(exist_ok=True)
    return measure([str(python), str(folder / "run.py")], env=env, cwd=str(folder), timeout=timeout)


def local_federation(root: Path, sites: int = 2) -> dict[str, Any]:
    """`flctl poc`: start, the 10-round job from submit to finished, per round, stop (seconds)."""
    ws = root / "poc"
    env = {**os.environ, "FLCTL_POC_WORKSPACE": str(ws)}
    env.pop("FLCTL_KIT", None)

    cpu: dict[str, float] = {}

    def flctl(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.monotonic()
        done = subprocess.run([FLCTL, *args], capture_output=True, text=True, env=env, timeout=300, check=False)
        wall = time.monotonic() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[args[1]] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"flctl {' '.join(args)} failed: {done.stderr}")
        return wall, done

    flctl("poc", "prepare", "-n", str(sites))
    try:
        start_s, started = flctl("poc", "start", "--json")
        job = flctl_job(root, sites)
        submit_s, submitted = flctl("job", "submit", str(job), "--watch", "--json")
        job_id = json.loads(submitted.stdout)["id"]
        _, shown = flctl("job", "show", job_id, "--json")
        info = json.loads(shown.stdout)
    finally:
        stop_s, _ = flctl("poc", "stop")
    flctl("poc", "clean")
    run_s = info["ended_at"] - info["started_at"]
    return {"sites": sites, "start_s": round(start_s, 3), "online_s": json.loads(started.stdout)["seconds"],
            "submit_to_finished_s": round(submit_s, 3), "submit_cpu_s": round(cpu["submit"], 3),
            "queued_to_started_s": round(info["started_at"] - info["submitted_at"], 3),
            "started_to_ended_s": round(run_s, 3), "per_round_s": round(run_s / ROUNDS, 3),
            "stop_s": round(stop_s, 3)}


# -- report ----------------------------------------------------------------------------------------------------

def _poc_line(poc: dict[str, Any]) -> str:
    return (f"local federation ({poc['sites']} sites, real processes and mTLS): start {poc['start_s']:.2f} s "
            f"(sites online after {poc['online_s']:.2f} s), submit to finished {poc['submit_to_finished_s']:.2f} s "
            f"(the CLI's own CPU {poc['submit_cpu_s']:.2f} s, queued {poc['queued_to_started_s']:.2f} s, "
            f"running {poc['started_to_ended_s']:.2f} s, {poc['per_round_s']:.3f} s a round), "
            f"stop {poc['stop_s']:.2f} s")


def poc_only(repeats: int, json_path: Path | None) -> None:
    """The local federation `repeats` times: each run (with the 1-minute load average before it), then the ranges."""
    runs = []
    for _ in range(repeats):
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="flctl-bench-") as tmp:
            runs.append({**local_federation(Path(tmp)), "load_before": round(load, 2)})
        print(f"[load {load:.2f}] {_poc_line(runs[-1])}", flush=True)

    def span(key: str) -> str:
        values = [run[key] for run in runs]
        return f"{min(values):.2f}-{max(values):.2f} s"

    loads = [run["load_before"] for run in runs]
    print(f"\n{repeats} runs: start {span('start_s')}, submit to finished {span('submit_to_finished_s')} "
          f"(the CLI's CPU {span('submit_cpu_s')}, running {span('started_to_ended_s')}), stop {span('stop_s')} "
          f"(load average {min(loads):.2f}-{max(loads):.2f})")
    if json_path:
        json_path.write_text(json.dumps({"local_federation": runs}, indent=1))


def ray_bench(sites: list[int], venvs: Path, timeout: float, json_path: Path | None) -> None:
    """flctl's local engine, flctl --engine ray and Flower's Ray simulation, hello-numpy-sized, 3 rounds."""
    params, rounds = 20, 3
    python = make_venv(venvs, "flwr")
    runners = {"flctl": lambda root, n: run_flctl(root, n, params, rounds, "local", timeout),
               "flctl-ray": lambda root, n: run_flctl(root, n, params, rounds, "ray", timeout),
               "flwr-ray": lambda root, n: run_flwr(root, python, n, params, rounds, timeout)}
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in runners}
    with tempfile.TemporaryDirectory(prefix="flctl-bench-") as tmp:
        for n in sites:
            for index, (name, run) in enumerate(runners.items()):
                root = Path(tmp) / f"{n}{index}"  # short: Ray's socket paths under it must stay within 107 bytes
                root.mkdir()
                result = run(root, n)
                shutil.rmtree(root, ignore_errors=True)
                done = "" if result["rc"] == 0 else f"  FAILED (exit {result['rc']})"
                print(f"{name:10s} {n:6d} sites: {result['wall_s']:8.2f} s  {result['peak_rss_mb']:7.0f} MB{done}",
                      flush=True)
                if result["rc"] != 0:
                    print(result["tail"], file=sys.stderr, flush=True)
                results[name][n] = result
    print(f"\nFedAvg, {params} parameters, {rounds} rounds; wall time (peak RSS of the process tree)")
    print("sites   " + "".join(f"{name:>24s}" for name in runners))
    for n in sites:
        cells = "".join(f"{results[k][n]['wall_s']:>10.2f} s ({results[k][n]['peak_rss_mb']:>6.0f} MB)"
                        if results[k][n]["rc"] == 0 else f"{'failed':>24s}" for k in runners)
        print(f"{n:6d}  {cells}")
    if json_path:
        json_path.write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--repeats", type=int, default=1, help="runs per framework and size (the median is shown)")
    parser.add_argument("--peers", action="store_true", help="also run NVIDIA FLARE and Flower (creates venvs)")
    parser.add_argument("--venvs", type=Path, default=Path(tempfile.gettempdir()) / "flctl-bench-venvs",
                        help="where the peers' virtual environments are made (kept for the next run)")
    parser.add_argument("--no-poc", action="store_true", help="skip the local federation")
    parser.add_argument("--poc-only", action="store_true", help="only the local federation, --repeats times")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="ray: flctl --engine ray beside its local engine and Flower's Ray simulation "
                             "(--sites default 100 1000 10000)")
    parser.add_argument("--timeout", type=float, default=1800, help="--engine ray: seconds a run may take")
    args = parser.parse_args()
    if args.engine == "ray":
        given = args.sites if args.sites != parser.get_default("sites") else [100, 1000, 10_000]
        ray_bench(given, args.venvs, args.timeout, args.json)
        return
    if args.poc_only:
        poc_only(args.repeats, args.json)
        return
    frameworks = ["flctl", *(PEERS if args.peers else [])]
    pythons = {name: make_venv(args.venvs, name) for name in PEERS if args.peers}
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in frameworks}
    with tempfile.TemporaryDirectory(prefix="flctl-bench-") as tmp:
        root = Path(tmp)
        for sites in args.sites:
            for name in frameworks:
                runs = []
                for _ in range(args.repeats):
                    if name == "flctl":
                        runs.append(run_flctl(root, sites))
                    elif name == "nvflare":
                        runs.append(run_nvflare(root, pythons[name], sites))
                    else:
                        runs.append(run_flwr(root, pythons[name], sites))
                    if runs[-1]["rc"] != 0:
                        print(f"{name} at {sites} sites failed (exit {runs[-1]['rc']}):\n{runs[-1]['tail']}",
                              file=sys.stderr)
                ok = [r for r in runs if r["rc"] == 0] or runs
                results[name][sites] = {"wall_s": statistics.median(r["wall_s"] for r in ok),
                                        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in ok),
                                        "rc": ok[0]["rc"], "runs": [r["wall_s"] for r in runs]}
                r = results[name][sites]
                print(f"{name:8s} {sites:3d} sites: {r['wall_s']:7.2f} s  {r['peak_rss_mb']:7.0f} MB", flush=True)
        poc = None if args.no_poc else local_federation(root)
    print(f"\nFedAvg, {PARAMS} parameters, {ROUNDS} rounds; wall time (peak RSS of the process tree)")
    print("sites  " + "".join(f"{name:>22s}" for name in frameworks) + "".join(
        f"{'vs ' + name:>14s}" for name in frameworks[1:]))
    for sites in args.sites:
        cells = "".join(f"{results[n][sites]['wall_s']:>10.2f} s ({results[n][sites]['peak_rss_mb']:>5.0f} MB)"
                        for n in frameworks)
        ratios = "".join(f"{results[n][sites]['wall_s'] / results['flctl'][sites]['wall_s']:>13.1f}x"
                         for n in frameworks[1:])
        print(f"{sites:5d}  {cells}{ratios}")
    if poc is not None:
        print(f"\n{_poc_line(poc)}")
    if args.json:
        args.json.write_text(json.dumps({"simulate": results, "local_federation": poc}, indent=1))


if __name__ == "__main__":
    main()
