#!/usr/bin/env python3
"""Model transfer over the wss transport beside gRPC, in one federation and one job on this machine.

    python bench/wss_transfer.py                     # 100 MB model (25M float32), 3 rounds
    python bench/wss_transfer.py --mb 20 --json      # one JSON object
    python bench/wss_transfer.py --no-proxy          # the wss site connects directly (no tinyproxy between)

It provisions a local project whose server has a WebSocket port, site-1 on `transport: grpc` and site-2 on
`transport: wss` (through tinyproxy on 127.0.0.1 when it is installed, allowing CONNECT to that port only, as a
site behind a corporate proxy would be), starts the server and both sites as real processes, and runs a FedAvg
job whose script adds one to the model it received and returns it. Both sites move the same model in the same
rounds, so the two transports are measured side by side under the same load.

It reports, per transport and direction (down: server to site, up: site to server), the model's MB over the
seconds each transfer took, from each site's job process log (`task ...: model received|answer sent, MB in S s`,
flctl.node.site.model_transfer), the median over rounds 1.. (round 0's download holds no model), and the ratio
wss / grpc. Figures are for this machine with everything on loopback: note the load (`load_1m`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FLCTL = str(Path(sys.executable).parent / "flctl")
MB = 1024 * 1024
MOVED = re.compile(r"task (\S+): (model received|answer sent), ([\d.]+) MB in ([\d.]+) s")
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
JOB = ("api_version: 1\nname: wss-transfer\nworkflow: {{type: fedavg, args: {{rounds: {rounds}, round_timeout_s: "
       "600}}}}\nsites: all\nmin_sites: 2\n")
SITES = {"site-1": "grpc", "site-2": "wss"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provision(work: Path) -> tuple[Path, int]:
    port, wss_port = free_port(), free_port()
    sites = ", ".join(f"{{name: {name}, org: o, transport: {t}}}" for name, t in SITES.items())
    (work / "project.yml").write_text(
        f"api_version: 1\nname: wsstransfer\nserver: {{name: localhost, org: o, port: {port}, wss_port: {wss_port}}}\n"
        f"sites: [{sites}]\nadmins: [{{name: admin@o, org: o, role: project_admin}}]\n")
    subprocess.run([FLCTL, "provision", work / "project.yml", "-w", work / "ws", "--json"], check=True,
                   capture_output=True)
    return work / "ws" / "wsstransfer" / "prod_00", wss_port


def start_proxy(work: Path, wss_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = work / "tinyproxy.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 600\nAllow 127.0.0.1\nConnectPort {wss_port}\n"
                    f"LogFile \"{work / 'tinyproxy.log'}\"\nLogLevel Warning\nMaxClients 50\n")
    proc = subprocess.Popen([shutil.which("tinyproxy") or "tinyproxy", "-d", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("tinyproxy did not start")


def run(prod: Path, work: Path, mb: int, rounds: int, proxy: str | None) -> str:
    job = work / "job"
    (job / "app").mkdir(parents=True)
    (job / "job.yml").write_text(JOB.format(rounds=rounds))
    (job / "app" / "train.py").write_text(SCRIPT.format(n=mb * MB // 4))
    plain = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    procs = []
    try:
        for name in ("localhost", *SITES):
            env = {**plain, "HTTPS_PROXY": proxy} if proxy and SITES.get(name) == "wss" else plain
            log = open(work / f"{name}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen([FLCTL, "node", "start", prod / name], stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, env=env))
            if name == "localhost":
                time.sleep(1.0)
        env = {**plain, "FLCTL_KIT": str(prod / "admin@o")}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run([FLCTL, "site", "ls", "--json"], capture_output=True, text=True, env=env, check=False)
            if out.returncode == 0 and sum(s["online"] for s in json.loads(out.stdout)) == len(SITES):
                break
            time.sleep(0.3)
        out = subprocess.run([FLCTL, "job", "submit", job, "--watch", "--json"], capture_output=True, text=True,
                             env=env, check=False)
        result = json.loads(out.stdout or "{}")
        if result.get("status") != "FINISHED":
            raise SystemExit(f"the job did not finish: {result} {out.stderr}")
        return str(result["id"])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def moved(prod: Path, site: str, job_id: str, mb: int) -> tuple[float, float]:
    """The median seconds of the site's downloads and uploads of the whole model."""
    logs = [p for p in (prod / site).rglob("job_process.log") if job_id in str(p)]
    if not logs:
        raise SystemExit(f"no job_process.log of job {job_id} under {prod / site}")
    found = [m for m in map(MOVED.search, logs[0].read_text().splitlines()) if m and float(m[3]) > mb * MB / 1e6 * 0.9]
    down = [float(m[4]) for m in found if m[2] == "model received"]
    up = [float(m[4]) for m in found if m[2] == "answer sent"]
    return statistics.median(down), statistics.median(up)


def measure(mb: int, rounds: int, use_proxy: bool) -> dict[str, Any]:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="flctl-wss-bench-") as tmp:
        work = Path(tmp)
        prod, wss_port = provision(work)
        proxy_proc, proxy = start_proxy(work, wss_port) if use_proxy and shutil.which("tinyproxy") else (None, None)
        try:
            job_id = run(prod, work, mb, rounds, proxy)
        finally:
            if proxy_proc is not None:
                proxy_proc.terminate()
                proxy_proc.wait(10)
        size = mb * MB / 1e6
        out: dict[str, Any] = {"size_mb": mb, "rounds": rounds, "load_1m": round(load, 2), "wss_proxy": bool(proxy)}
        for site, transport in SITES.items():
            down, up = moved(prod, site, job_id, mb)
            out[f"{transport}_down_mb_s"] = round(size / down)
            out[f"{transport}_up_mb_s"] = round(size / up)
            out[f"{transport}_mb_s"] = round(2 * size / (down + up))
        out["wss_over_grpc"] = round(out["wss_mb_s"] / out["grpc_mb_s"], 3)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="model size in MB (MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-proxy", action="store_true", help="the wss site connects without tinyproxy")
    parser.add_argument("--json", action="store_true", help="one JSON object, nothing else")
    args = parser.parse_args()
    result = measure(args.mb, args.rounds, not args.no_proxy)
    if args.json:
        print(json.dumps(result))
        return
    via = "through tinyproxy" if result["wss_proxy"] else "direct"
    print(f"{args.mb} MB model, {args.rounds} rounds, load {result['load_1m']} (wss {via}):")
    for transport in ("grpc", "wss"):
        print(f"  {transport:5} down {result[f'{transport}_down_mb_s']:5} MB/s   up {result[f'{transport}_up_mb_s']:5} "
              f"MB/s   both {result[f'{transport}_mb_s']:5} MB/s")
    print(f"  wss / grpc: {result['wss_over_grpc']:.2f}")


if __name__ == "__main__":
    main()
