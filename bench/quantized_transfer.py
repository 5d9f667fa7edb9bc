#!/usr/bin/env python3
"""Quantized transfer (job.yml `transfer: {quantize: ...}`) over the real federation: bytes on the wire and time.

    python bench/quantized_transfer.py                        # 100 MB model (25M float32), 2 sites, 3 rounds
    python bench/quantized_transfer.py --mb 20 --modes none int8 --json

It provisions a local project (a server and two sites, `flctl node start` each), then runs one FedAvg job per mode
(`none`: no `transfer:` key, each tensor in its own dtype; `fp16`, `bf16`, `int8`) on the same federation, one after
the other. The training script adds one to the float32 model it received and returns it. Per mode it reports:

- wire MB down / up: the safetensors bytes (MB = 10^6 bytes, as the logs say) each site received and sent per
  round (quantized: what travelled), from each site's job process log (`task ...: model received, MB in S s`), the
  median over rounds 1.. and both sites, and `share`: that over the float32 model's bytes;
- down s / up s: the seconds those transfers took (from the same lines);
- round s: the median time between the ends of two rounds (sends, the script, quantizing both ways, averaging);
- wall s: submit to FINISHED;
- quantize s / dequantize s: `flctl.node.wire.quantize` on the model in this process (what the server does to each
  task's model and each answer, and each site once each way), the better of two runs.

Figures are for this machine with everything on loopback; `uptime`'s load before each mode is in the JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FLCTL = str(Path(sys.executable).parent / "flctl")
MB = 1024 * 1024
ROUND_DONE = re.compile(r"round \d+ of \d+: ")
MOVED = re.compile(r"task (\S+): (model received|answer sent), ([\d.]+) MB in ([\d.]+) s")
MODES = ("none", "fp16", "bf16", "int8")
SCRIPT = """\
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    params = model.params or {{"w": np.zeros({n}, np.float32)}}
    for name in params:
        params[name] += 1
    fl.send(fl.Model(params=params, num_examples=1))
    del model, params
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provision(work: Path) -> Path:
    """A local project with a server and two sites; its prod folder."""
    project = work / "project.yml"
    project.write_text(f"api_version: 1\nname: quantized\nserver: {{name: localhost, org: o, port: {free_port()}}}\n"
                       "sites: [{name: site-1, org: o}, {name: site-2, org: o}]\n"
                       "admins: [{name: admin@o, org: o, role: project_admin}]\n")
    subprocess.run([FLCTL, "provision", project, "-w", work / "ws", "--json"], check=True, capture_output=True)
    return work / "ws" / "quantized" / "prod_00"


def job_folder(work: Path, mode: str, mb: int, rounds: int) -> Path:
    job = work / f"job-{mode}"
    (job / "app").mkdir(parents=True)
    transfer = "" if mode == "none" else f"transfer: {{quantize: {mode}}}\n"
    (job / "job.yml").write_text(f"api_version: 1\nname: quantized-{mode}\nworkflow: {{type: fedavg, args: "
                                 f"{{rounds: {rounds}, round_timeout_s: 600}}}}\nsites: all\nmin_sites: 2\n{transfer}")
    (job / "app" / "train.py").write_text(SCRIPT.format(n=mb * MB // 4))
    return job


def run_job(prod: Path, job: Path, env: dict[str, str]) -> dict[str, Any]:
    start = time.monotonic()
    out = subprocess.run([FLCTL, "job", "submit", job, "--watch", "--json"], capture_output=True, text=True, env=env,
                         check=False)
    wall = time.monotonic() - start
    result = json.loads(out.stdout or "{}")
    if result.get("status") != "FINISHED":
        raise SystemExit(f"the job {job.name} did not finish: {out.stdout} {out.stderr}")
    logs = subprocess.run([FLCTL, "job", "logs", result["id"], "--json"], capture_output=True, text=True, env=env,
                          check=True)
    lines = [json.loads(line) for line in logs.stdout.splitlines() if line.strip()]
    ends = [e["time"] for e in lines if e["site"] == "server" and ROUND_DONE.match(e["line"])]
    round_s = statistics.median(b - a for a, b in itertools.pairwise(ends)) if len(ends) > 1 else wall
    moved: dict[str, list[tuple[float, float]]] = {"model received": [], "answer sent": []}
    for name in ("site-1", "site-2"):
        log = next(p for p in (prod / name).rglob("job_process.log") if result["id"] in str(p))
        for m in filter(None, map(MOVED.search, log.read_text().splitlines())):
            if float(m[3]) > 0.5:  # round 0 brings no model yet
                moved[m[2]].append((float(m[3]), float(m[4])))
    down, up = moved["model received"], moved["answer sent"]
    return {"wall_s": wall, "round_s": round_s, "down_mb": statistics.median(d[0] for d in down),
            "up_mb": statistics.median(u[0] for u in up), "down_s": statistics.median(d[1] for d in down),
            "up_s": statistics.median(u[1] for u in up)}


def codec_seconds(mode: str, mb: int) -> tuple[float, float]:
    """Seconds to quantize and to dequantize an `mb` MB float32 model here (the better of two runs)."""
    if mode == "none":
        return 0.0, 0.0
    from flctl.node.wire import quantize

    model = {"w": np.random.default_rng(0).normal(size=mb * MB // 4).astype(np.float32)}
    best_q = best_d = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        sent, metadata = quantize.quantize(model, mode)
        best_q = min(best_q, time.perf_counter() - started)
        started = time.perf_counter()
        quantize.dequantize(sent, metadata)
        best_d = min(best_d, time.perf_counter() - started)
    return best_q, best_d


def measure(mb: int, rounds: int, modes: list[str]) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory(prefix="flctl-quantized-") as tmp:
        work = Path(tmp)
        prod = provision(work)
        env = {**os.environ, "FLCTL_KIT": str(prod / "admin@o")}
        procs = []
        try:
            for name in ("localhost", "site-1", "site-2"):
                log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
                procs.append(subprocess.Popen([FLCTL, "node", "start", prod / name], stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
                if name == "localhost":
                    time.sleep(1.0)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                sites = subprocess.run([FLCTL, "site", "ls", "--json"], capture_output=True, text=True, env=env,
                                       check=False)
                if sites.returncode == 0 and sum(s["online"] for s in json.loads(sites.stdout)) == 2:
                    break
                time.sleep(0.3)
            for mode in modes:
                load = os.getloadavg()[0]
                figures = run_job(prod, job_folder(work, mode, mb, rounds), env)
                quantize_s, dequantize_s = codec_seconds(mode, mb)
                out.append({"mode": mode, "size_mb": mb, "load_1m": round(load, 2),
                            "wire_down_mb": round(figures["down_mb"], 1), "wire_up_mb": round(figures["up_mb"], 1),
                            "wire_share": round((figures["down_mb"] + figures["up_mb"]) / (2 * mb * MB / 1e6), 3),
                            "down_s": round(figures["down_s"], 2), "up_s": round(figures["up_s"], 2),
                            "round_s": round(figures["round_s"], 2), "wall_s": round(figures["wall_s"], 2),
                            "quantize_s": round(quantize_s, 2), "dequantize_s": round(dequantize_s, 2)})
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="model size in MB (MiB) of float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--json", action="store_true", help="one JSON object per mode, nothing else")
    args = parser.parse_args()
    rows = measure(args.mb, args.rounds, args.modes)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'mode':>5} {'load':>5} | {'wire MB down':>12} {'up':>6} {'share':>6} | {'down s':>6} {'up s':>6} | "
          f"{'round s':>7} {'wall s':>7} | {'quantize s':>10} {'dequantize s':>12}")
    for r in rows:
        print(f"{r['mode']:>5} {r['load_1m']:>5.2f} | {r['wire_down_mb']:>12} {r['wire_up_mb']:>6} "
              f"{r['wire_share']:>6} | {r['down_s']:>6} {r['up_s']:>6} | {r['round_s']:>7} {r['wall_s']:>7} | "
              f"{r['quantize_s']:>10} {r['dequantize_s']:>12}")


if __name__ == "__main__":
    main()
