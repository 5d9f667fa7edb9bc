#!/usr/bin/env python3
"""Model transfer over the real federation: FedAvg with a big model, 2 sites, on this machine over mTLS.

    python bench/transfer.py                    # 100 MB model (25M float32), 2 sites, 3 rounds
    python bench/transfer.py --mb 100 1000      # several sizes

It provisions a local project, starts the server and the sites as real processes (`flctl node start`),
submits a job whose training script adds one to the model it received, in place (as an optimizer's step
does), and returns it, and reports:

- wall s: from submit to FINISHED (3 rounds: round 0 only uploads, rounds 1-2 download and upload);
- round s: the median time of rounds 1.. (each moves the model to every site and back);
- MB/s per site: model bytes moved per site per round (down + up) / round time;
- server peak MB: the peak resident memory of the server daemon plus its job processes (VmHWM from /proc),
  each apart, and that sum as a multiple of the model size;
- site peak MB: the same for the site that used more (its daemon, job process and training script).

Figures are for this machine with everything on loopback; run it on an idle machine.
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

ROOT = Path(__file__).resolve().parent.parent
ROUND_DONE = re.compile(r"round \d+ \(\d+ of \d+\): ")  # FedAvg's line at the end of each round
FLCTL = str(Path(sys.executable).parent / "flctl")

SCRIPT = """\
import numpy as np
import node.api as fl

fl.init()
while fl.running():
    model = fl.receive()
    params = model.params or {{"w": np.zeros({n}, np.float32)}}
    for value in params.values():
        value += 1  # in place, as an optimizer's step updates a model
    fl.send(fl.Model(params=params, num_examples=1))
    del model, params
"""
JOB = """\
api_version: 1
name: transfer
workflow: {{type: fedavg, args: {{rounds: {rounds}, round_timeout_s: 600}}}}
sites: all
min_sites: 2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [d for c in found for d in descendants(c)]


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def run(mb: int, rounds: int, work: Path) -> dict[str, float]:
    port = free_port()
    project = work / "project.yml"
    project.write_text(f"api_version: 1\nname: transfer\nserver: {{name: localhost, org: o, port: {port}}}\n"
                       "sites: [{name: site-1, org: o}, {name: site-2, org: o}]\n"
                       "admins: [{name: admin@o, org: o, role: project_admin}]\n")
    subprocess.run([FLCTL, "provision", project, "-w", work / "ws", "--json"], check=True, capture_output=True)
    prod = work / "ws" / "transfer" / "prod_00"
    job = work / "job"
    (job / "app").mkdir(parents=True)
    (job / "job.yml").write_text(JOB.format(rounds=rounds))
    (job / "app" / "train.py").write_text(SCRIPT.format(n=mb * 1024 * 1024 // 4))
    procs = []
    try:
        for name in ("localhost", "site-1", "site-2"):
            log = open(work / f"{name}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen([FLCTL, "node", "start", prod / name], stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
            if name == "localhost":
                time.sleep(1.0)
        env = {**os.environ, "FLCTL_KIT": str(prod / "admin@o")}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run([FLCTL, "site", "ls", "--json"], capture_output=True, text=True, env=env,
                                 check=False)
            if out.returncode == 0 and sum(s["online"] for s in json.loads(out.stdout)) == 2:
                break
            time.sleep(0.3)
        start = time.monotonic()
        watch = subprocess.Popen([FLCTL, "job", "submit", job, "--watch", "--json"], stdout=subprocess.PIPE,
                                 text=True, env=env)
        peak = daemon_peak = job_peak = site_peak = 0.0
        server = procs[0].pid
        while watch.poll() is None:
            daemon, jobs = hwm_mb(server), [hwm_mb(c) for c in children(server)]
            daemon_peak, job_peak = max(daemon_peak, daemon), max([job_peak, *jobs])
            peak = max(peak, daemon + sum(jobs))
            for site in procs[1:]:
                site_peak = max(site_peak, hwm_mb(site.pid) + sum(hwm_mb(c) for c in descendants(site.pid)))
            time.sleep(0.1)
        wall = time.monotonic() - start
        result = json.loads(watch.stdout.read() if watch.stdout else "{}")
        if result.get("status") != "FINISHED":
            raise SystemExit(f"the job did not finish: {result}")
        logs = subprocess.run([FLCTL, "job", "logs", result["id"], "--json"], capture_output=True, text=True,
                              env=env, check=True)
        lines = [json.loads(line) for line in logs.stdout.splitlines() if line.strip()]
        ends = [e["time"] for e in lines if e["site"] == "server" and ROUND_DONE.match(e["line"])]
        round_s = statistics.median(b - a for a, b in itertools.pairwise(ends)) if len(ends) > 1 else wall
        return {"mb": mb, "wall_s": wall, "round_s": round_s, "mb_s_per_site": 2 * mb / round_s,
                "server_peak_mb": peak, "daemon_peak_mb": daemon_peak, "job_peak_mb": job_peak,
                "site_peak_mb": site_peak}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="+", default=[100], help="model sizes in MB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model MB':>9} {'wall s':>8} {'round s':>8} {'MB/s/site':>10} {'server peak MB':>15} "
          f"{'daemon MB':>10} {'job MB':>8} {'x model':>8} {'site peak MB':>13}")
    for mb in args.mb:
        with tempfile.TemporaryDirectory(prefix="flctl-transfer-") as tmp:
            r = run(mb, args.rounds, Path(tmp))
        print(f"{r['mb']:>9} {r['wall_s']:>8.2f} {r['round_s']:>8.2f} {r['mb_s_per_site']:>10.0f} "
              f"{r['server_peak_mb']:>15.0f} {r['daemon_peak_mb']:>10.0f} {r['job_peak_mb']:>8.0f} "
              f"{r['server_peak_mb'] / mb:>8.2f} {r['site_peak_mb']:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
