#!/usr/bin/env python3
"""Model transfer over the real federation: FedAvg with a big model, 2 sites, on this machine over mTLS.

    python bench/transfer.py                    # 100 MB model (25M float32), 2 sites, 3 rounds
    python bench/transfer.py --mb 100 1000      # several sizes
    python bench/transfer.py --ceiling          # what the transport alone moves (see below)

It provisions a local project, starts the server and the sites as real processes (`flctl node start`),
submits a job whose training script adds one to the model it received, in place (as an optimizer's step
does), and returns it, and reports:

- wall s: from submit to FINISHED (3 rounds: round 0 only uploads, rounds 1-2 download and upload);
- round s: the median time of rounds 1.. (each moves the model to every site and back);
- MB/s per site: model bytes moved per site per round (down + up) / round time;
- server peak MB: the peak resident memory of the server daemon plus its job processes (VmHWM from /proc),
  each apart, and that sum as a multiple of the model size;
- site peak MB: the same for the site that used more (its daemon, job process and training script).

With `--ceiling` it measures what the transport alone moves instead: a bare gRPC server with the server's kit
and two site processes with the sites' kits (the same mutual TLS, message size and channel options as flctl),
each site receiving the model into one buffer and sending it back, both at once; no job, script, disk or
aggregation. `MB/s/site` is then (down + up) / (the site's download time + upload time): no design that moves
models over gRPC Python can beat it on the same machine.

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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROUND_DONE = re.compile(r"round \d+ \(\d+ of \d+\): ")  # FedAvg's line at the end of each round
FLCTL = str(Path(sys.executable).parent / "flctl")

SCRIPT = """\
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    params = model.params or {{"w": np.zeros({n}, np.float32)}}
    for name in params:  # (a loop variable bound to an array would keep it alive into the next round)
        params[name] += 1  # in place, as an optimizer's step updates a model
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


def provision(work: Path) -> Path:
    """A local project with a server and two sites; its prod folder."""
    project = work / "project.yml"
    project.write_text(f"api_version: 1\nname: transfer\nserver: {{name: localhost, org: o, port: {free_port()}}}\n"
                       "sites: [{name: site-1, org: o}, {name: site-2, org: o}]\n"
                       "admins: [{name: admin@o, org: o, role: project_admin}]\n")
    subprocess.run([FLCTL, "provision", project, "-w", work / "ws", "--json"], check=True, capture_output=True)
    return work / "ws" / "transfer" / "prod_00"


def ceiling(mb: int, work: Path) -> dict[str, float]:
    """The transport alone: a bare gRPC server streams `mb` MB to two site processes at once, and takes it back."""
    from concurrent import futures

    import grpc

    sys.path.insert(0, str(ROOT))
    from flctl.node.config.kit import load_kit
    from flctl.node.security.tls import CHUNK, SERVER_OPTIONS, server_credentials

    prod = provision(work)
    kit = load_kit(prod / "localhost", verify=False)
    block = bytes(CHUNK)

    def down(_request: bytes, _context: Any) -> Any:
        for _ in range(mb * 1024 * 1024 // CHUNK):
            yield block

    def up(requests: Any, _context: Any) -> bytes:
        for _ in requests:
            pass
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(8), options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench", {
        "down": grpc.unary_stream_rpc_method_handler(down), "up": grpc.stream_unary_rpc_method_handler(up)}),))
    server.add_secure_port(kit.target, server_credentials(kit))
    server.start()
    try:
        go = time.time() + 3.0  # both sites connected and waiting by then
        sites = [subprocess.Popen([sys.executable, __file__, "--ceiling-site", str(prod / name), str(mb), str(go)],
                                  stdout=subprocess.PIPE, text=True) for name in ("site-1", "site-2")]
        times = [json.loads(site.communicate(timeout=600)[0]) for site in sites]
    finally:
        server.stop(None)
    rates = [2 * mb / (t["down_s"] + t["up_s"]) for t in times]
    return {"mb": mb, "mb_s_per_site": min(rates), "down_s": max(t["down_s"] for t in times),
            "up_s": max(t["up_s"] for t in times)}


def ceiling_site(kit_dir: Path, mb: int, go: float) -> None:
    """One site of `ceiling`: download the model into one buffer, send it back; print both times as JSON."""
    sys.path.insert(0, str(ROOT))
    import grpc

    from flctl.node.config.kit import load_kit
    from flctl.node.security.tls import CHUNK, channel

    chan = channel(load_kit(kit_dir, verify=False))
    grpc.channel_ready_future(chan).result(timeout=30)
    model = bytearray(mb * 1024 * 1024)
    view = memoryview(model)
    time.sleep(max(0.0, go - time.time()))
    start = time.perf_counter()
    got = 0
    for block in chan.unary_stream("/bench/down")(b""):
        view[got:got + len(block)] = block
        got += len(block)
    downloaded = time.perf_counter()
    chan.stream_unary("/bench/up")(bytes(view[i:i + CHUNK]) for i in range(0, len(model), CHUNK))
    print(json.dumps({"down_s": downloaded - start, "up_s": time.perf_counter() - downloaded}))


def run(mb: int, rounds: int, work: Path) -> dict[str, float]:
    prod = provision(work)
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
    if sys.argv[1:2] == ["--ceiling-site"]:  # one site process of --ceiling
        ceiling_site(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="+", default=[100], help="model sizes in MB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ceiling", action="store_true", help="measure the bare transport instead (see above)")
    args = parser.parse_args()
    if args.ceiling:
        print(f"{'model MB':>9} {'down s':>8} {'up s':>8} {'MB/s/site':>10}   (bare gRPC over mTLS, 2 sites at once)")
        for mb in args.mb:
            with tempfile.TemporaryDirectory(prefix="flctl-transfer-") as tmp:
                r = ceiling(mb, Path(tmp))
            print(f"{r['mb']:>9} {r['down_s']:>8.2f} {r['up_s']:>8.2f} {r['mb_s_per_site']:>10.0f}", flush=True)
        return
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
