#!/usr/bin/env python3
"""Model transfer over the real federation, beside what bare gRPC moves on the same machine in the same run.

    python bench/transfer.py                          # 100 MB model (25M float32), 2 sites, 5 rounds, 1 stream
    python bench/transfer.py --mb 100 1000 --json     # several sizes; one JSON object per size
    python bench/transfer.py --mb 1000 --streams 4    # each model over 4 concurrent streams (both sides)
    python bench/transfer.py --ceiling-only           # the bare gRPC figures alone
    python bench/transfer.py --mb 1000 --keep /tmp/t   # keep the kits and logs (/tmp/t/1000mb) to read the timeline

For each size it provisions a local project and measures, in this order:

1. the ceiling: a bare `grpc.aio` server with the server's kit and two site processes with the sites' kits (the
   same mutual TLS, 1 MiB messages, channel options and number of streams as flctl), each site receiving the
   model into one buffer and sending it back, both sites at once; no job, script, disk or aggregation;
2. flctl: the server and the sites as real processes (`flctl node start`, each site's `local/resources.yml`
   saying `model_streams`), a FedAvg job whose training script adds one to the model it received, in place (as
   an optimizer's step does), and returns it;
3. the ceiling again (the better of the two is kept: the ratio is then the harder one to meet).

It reports, per site and direction (down: server to site, up: site to server), the model's MB over the seconds
its stream(s) took: flctl's from each site's job process log (`task ...: model received, ... in S s`, from the
task's header to its last byte; `answer sent`, from the first message to the server's acknowledgement, which
comes once the server has written the result to disk and checked it), the median over rounds 2.. (`STEADY`)
and both sites; the ceiling's as timed by its site processes, the median over both sites and the better run.
`MB/s/site` is (down + up) MB over (down + up) seconds, and `ratio` flctl's over the ceiling's. Besides: the wall
time from submit to FINISHED, the median round (each moves the model to every site and back, runs the script
and averages), the server's peak resident memory (its daemon plus its job process, VmHWM from /proc) as MB, as a
multiple of the model and as MB over the model, and the same peak for the site that used more (its daemon, job
process and training script). Figures are for this machine with everything on loopback: note `uptime`'s load,
which the JSON holds (`load_1m` before the size's run).

The ceiling's processes also count the CPU seconds they spend moving the model (`ceiling_cpu_s_per_gb`: the sites'
and the server's, over the GB moved, 4 x the model: two sites, down and up), which a loaded machine changes far
less than it changes seconds. From it `cpu_bound_mb_s_per_site` = 500 x cores / ceiling_cpu_s_per_gb is what the
bare transport reaches per site with every core of this machine to itself (each site moves the model down and up,
both sites at once): no number of streams goes past it, since streams share the same work out, not make it less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
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

ROOT = Path(__file__).resolve().parent.parent
ROUND_DONE = re.compile(r"round \d+ of \d+: ")  # FedAvg's line at the end of each round
MOVED = re.compile(r"task (\S+): (model received|answer sent), ([\d.]+) MB in ([\d.]+) s")  # model_transfer's lines
FLCTL = str(Path(sys.executable).parent / "flctl")
MB = 1024 * 1024
STEADY = 2
"""flctl's figures are from round STEADY on: rounds 0 and 1 overlap the job's start (the job processes', the
scripts' and the metrics feeder's imports), which on a loaded machine slowed their transfers two- to threefold
(`flctl_all_rounds_mb_s_per_site` counts them too)."""
KINDS = ("aio", "sync")  # the bare gRPC APIs the ceiling is measured with: the faster counts

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


class Tree:
    """Which processes descend from which, from one scan of /proc refreshed at most every `every_s` seconds: the
    bench watches memory while flctl runs, and scanning /proc (hundreds of processes on a shared machine) for every
    lookup, ten times a second, took a good part of a core from the processes it measures."""

    def __init__(self, every_s: float = 1.0) -> None:
        self._every_s = every_s
        self._at = -every_s
        self._children: dict[int, list[int]] = {}

    def _scan(self) -> None:
        if time.monotonic() - self._at < self._every_s:
            return
        found: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                found.setdefault(parent, []).append(int(entry.name))
        self._children, self._at = found, time.monotonic()

    def children(self, pid: int) -> list[int]:
        self._scan()
        return list(self._children.get(pid, []))

    def descendants(self, pid: int) -> list[int]:
        found = self.children(pid)
        return found + [d for c in found for d in self.descendants(c)]


def provision(work: Path) -> Path:
    """A local project with a server and two sites; its prod folder."""
    project = work / "project.yml"
    project.write_text(f"api_version: 1\nname: transfer\nserver: {{name: localhost, org: o, port: {free_port()}}}\n"
                       "sites: [{name: site-1, org: o}, {name: site-2, org: o}]\n"
                       "admins: [{name: admin@o, org: o, role: project_admin}]\n")
    subprocess.run([FLCTL, "provision", project, "-w", work / "ws", "--json"], check=True, capture_output=True)
    return work / "ws" / "transfer" / "prod_00"


# ---------------------------------------------------------------------------------------------- the ceiling
def ceiling(prod: Path, mb: int, streams: int, kind: str) -> list[dict[str, float]]:
    """The transport alone: a bare gRPC server (`kind`: grpc.aio, or the synchronous API with a thread per call, as
    flctl's server) streams `mb` MB (over `streams` streams) to two site processes at once (the same API) and takes
    it back; each site's download and upload seconds and CPU seconds (`cpu_s`, its process's over the transfer),
    with the server's over the same time (`server_cpu_s`, the same in each).

    The server and each site run in a session of their own, as flctl's server daemon and site job processes do:
    with the kernel's autogroups (sched_autogroup_enabled) a session is what shares the CPU, and on a loaded
    machine processes in one session hand messages to each other much faster than across sessions (200 MB, load
    17-20: 54-124 MB/s down with the bare server and sites in one session, 36-101 in sessions of their own), so
    a ceiling in one session would measure the scheduler's grouping, not flctl's overhead."""
    out = subprocess.run([sys.executable, __file__, "--ceiling-server", str(prod), str(mb), str(streams), kind],
                         capture_output=True, text=True, check=True, start_new_session=True, timeout=1800)
    return list(json.loads(out.stdout))


async def _ceiling(prod: Path, mb: int, streams: int, kind: str) -> list[dict[str, float]]:
    from concurrent import futures

    import grpc

    sys.path.insert(0, str(ROOT))
    from flctl.node.config.kit import load_kit
    from flctl.node.security.tls import CHUNK, SERVER_OPTIONS, server_credentials
    from flctl.node.wire.model_parts import ranges

    kit = load_kit(prod / "localhost", verify=False)
    model = memoryview(bytes(mb * MB))
    cut = ranges(len(model), streams, CHUNK)

    async def down(request: bytes, _context: Any) -> Any:
        begin, end = cut[int(request)]
        for start in range(begin, end, CHUNK):
            yield bytes(model[start:min(end, start + CHUNK)])  # one copy, as flctl's chunk_codec.encode

    async def up(requests: Any, _context: Any) -> bytes:
        async for _ in requests:
            pass
        return b""

    def sync_down(request: bytes, _context: Any) -> Any:
        begin, end = cut[int(request)]
        for start in range(begin, end, CHUNK):
            yield bytes(model[start:min(end, start + CHUNK)])

    def sync_up(requests: Any, _context: Any) -> bytes:
        for _ in requests:
            pass
        return b""

    aio = kind == "aio"
    handlers = grpc.method_handlers_generic_handler("bench", {
        "down": grpc.unary_stream_rpc_method_handler(down if aio else sync_down),
        "up": grpc.stream_unary_rpc_method_handler(up if aio else sync_up)})
    server: Any = grpc.aio.server(options=SERVER_OPTIONS) if aio else \
        grpc.server(futures.ThreadPoolExecutor(16), options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((handlers,))
    server.add_secure_port(kit.target, server_credentials(kit))
    await server.start() if aio else server.start()
    try:
        go = time.time() + 3.0  # both sites connected and waiting by then
        cpu = time.process_time()
        sites = [await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--ceiling-site", str(prod / name), str(mb), str(streams), str(go), kind,
            stdout=subprocess.PIPE, start_new_session=True) for name in ("site-1", "site-2")]
        outs = [await site.communicate() for site in sites]
        cpu = time.process_time() - cpu
    finally:
        await server.stop(None) if aio else server.stop(None)
    return [{**json.loads(out), "server_cpu_s": cpu} for out, _ in outs]


def ceiling_site(kit_dir: Path, mb: int, streams: int, go: float, kind: str) -> None:
    """One site of `ceiling`: download the model into one buffer, send it back; print both times as JSON."""
    times = asyncio.run(_ceiling_site(kit_dir, mb, streams, go)) if kind == "aio" else \
        sync_ceiling_site(kit_dir, mb, streams, go)
    print(json.dumps(times))


def sync_ceiling_site(kit_dir: Path, mb: int, streams: int, go: float) -> dict[str, float]:
    """`_ceiling_site` with gRPC's synchronous API, a thread per stream (as flctl's site job process)."""
    from concurrent import futures

    import grpc

    sys.path.insert(0, str(ROOT))
    from flctl.node.config.kit import load_kit
    from flctl.node.security.tls import CHUNK, channel
    from flctl.node.wire.model_parts import ranges

    chan = channel(load_kit(kit_dir, verify=False))
    grpc.channel_ready_future(chan).result(timeout=30)
    view = memoryview(bytearray(mb * MB))
    cut = ranges(len(view), streams, CHUNK)
    time.sleep(max(0.0, go - time.time()))

    def down(part: int) -> None:
        at = cut[part][0]
        for block in chan.unary_stream("/bench/down")(str(part).encode()):
            view[at:at + len(block)] = block
            at += len(block)

    def up(part: int) -> None:
        begin, end = cut[part]
        chan.stream_unary("/bench/up")(bytes(view[i:min(end, i + CHUNK)]) for i in range(begin, end, CHUNK))

    with futures.ThreadPoolExecutor(streams) as pool:
        cpu, start = time.process_time(), time.perf_counter()
        list(pool.map(down, range(streams)))
        downloaded = time.perf_counter()
        list(pool.map(up, range(streams)))
        done = time.perf_counter()
    cpu = time.process_time() - cpu
    chan.close()
    return {"down_s": downloaded - start, "up_s": done - downloaded, "cpu_s": cpu}


async def _ceiling_site(kit_dir: Path, mb: int, streams: int, go: float) -> dict[str, float]:
    import grpc

    sys.path.insert(0, str(ROOT))
    from flctl.node.config.kit import load_kit
    from flctl.node.security.tls import CHUNK, channel_options
    from flctl.node.wire.model_parts import ranges

    kit = load_kit(kit_dir, verify=False)
    creds = grpc.ssl_channel_credentials(root_certificates=kit.ca_pem, private_key=kit.key_pem,
                                         certificate_chain=kit.cert_pem)
    chan = grpc.aio.secure_channel(kit.target, creds, options=channel_options())
    await asyncio.wait_for(chan.channel_ready(), 30)
    view = memoryview(bytearray(mb * MB))
    cut = ranges(len(view), streams, CHUNK)
    await asyncio.sleep(max(0.0, go - time.time()))

    async def down(part: int) -> None:
        at = cut[part][0]
        async for block in chan.unary_stream("/bench/down")(str(part).encode()):
            view[at:at + len(block)] = block  # one copy into the model's buffer, as flctl's site
            at += len(block)

    async def up(part: int) -> None:
        async def blocks() -> Any:
            begin, end = cut[part]
            for start in range(begin, end, CHUNK):
                yield bytes(view[start:min(end, start + CHUNK)])

        await chan.stream_unary("/bench/up")(blocks())

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(down(i) for i in range(streams)))
    downloaded = time.perf_counter()
    await asyncio.gather(*(up(i) for i in range(streams)))
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    await chan.close()
    return {"down_s": downloaded - start, "up_s": done - downloaded, "cpu_s": cpu}


# ---------------------------------------------------------------------------------------------- flctl
def run(prod: Path, work: Path, mb: int, rounds: int, streams: int) -> dict[str, Any]:
    job = work / "job"
    (job / "app").mkdir(parents=True)
    (job / "job.yml").write_text(JOB.format(rounds=rounds))
    (job / "app" / "train.py").write_text(SCRIPT.format(n=mb * MB // 4))
    for name in ("site-1", "site-2"):
        resources = prod / name / "local" / "resources.yml"
        resources.parent.mkdir(exist_ok=True)
        resources.write_text(f"model_streams: {streams}\n")
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
        tree = Tree()
        while watch.poll() is None:  # VmHWM is each process's peak so far: reading it now and then misses nothing
            daemon, jobs = hwm_mb(server), [hwm_mb(c) for c in tree.children(server)]
            daemon_peak, job_peak = max(daemon_peak, daemon), max([job_peak, *jobs])
            peak = max(peak, daemon + sum(jobs))
            for site in procs[1:]:
                site_peak = max(site_peak, hwm_mb(site.pid) + sum(hwm_mb(c) for c in tree.descendants(site.pid)))
            time.sleep(0.25)
        wall = time.monotonic() - start
        result = json.loads(watch.stdout.read() if watch.stdout else "{}")
        if result.get("status") != "FINISHED":
            raise SystemExit(f"the job did not finish: {result}")
        logs = subprocess.run([FLCTL, "job", "logs", result["id"], "--json"], capture_output=True, text=True,
                              env=env, check=True)
        lines = [json.loads(line) for line in logs.stdout.splitlines() if line.strip()]
        ends = [e["time"] for e in lines if e["site"] == "server" and ROUND_DONE.match(e["line"])]
        round_s = statistics.median(b - a for a, b in itertools.pairwise(ends)) if len(ends) > 1 else wall
        down, up = moved(prod, result["id"], mb, STEADY)
        every = moved(prod, result["id"], mb)
        return {"wall_s": wall, "round_s": round_s, "down_s": down, "up_s": up, "all_down_s": every[0],
                "all_up_s": every[1], "server_peak_mb": peak,
                "daemon_peak_mb": daemon_peak, "job_peak_mb": job_peak, "site_peak_mb": site_peak}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def moved(prod: Path, job_id: str, mb: int, skip: int = 0) -> tuple[list[float], list[float]]:
    """The seconds of each download and upload of the model at both sites, from their job process logs, from round
    `skip` on (round 0's download, of no model yet, is always left out)."""
    down: list[float] = []
    up: list[float] = []
    for name in ("site-1", "site-2"):
        logs = [path for path in (prod / name).rglob("job_process.log") if job_id in str(path)]
        if not logs:
            raise SystemExit(f"no job_process.log of job {job_id} under {prod / name}")
        found = [m for m in map(MOVED.search, logs[0].read_text().splitlines()) if m and float(m[3]) > mb * 0.9]
        down += [float(m[4]) for m in found if m[2] == "model received"][max(0, skip - 1):]  # the first is round 1's
        up += [float(m[4]) for m in found if m[2] == "answer sent"][skip:]
    return down, up


# ---------------------------------------------------------------------------------------------- report
def load_1m() -> float:
    return os.getloadavg()[0]


def rate(mb: int, down_s: float, up_s: float) -> float:
    return 2 * mb / (down_s + up_s)


def measure(mb: int, rounds: int, streams: int, ceiling_only: bool, keep: Path | None = None) -> dict[str, Any]:
    load = load_1m()
    with contextlib.ExitStack() as stack:
        if keep is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flctl-transfer-")))
        else:
            work = keep / f"{mb}mb"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
        prod = provision(work)
        bare = {kind: [ceiling(prod, mb, streams, kind)] for kind in KINDS}
        flctl = None if ceiling_only else run(prod, work, mb, rounds, streams)
        if flctl is not None:
            for kind in KINDS:
                bare[kind].append(ceiling(prod, mb, streams, kind))
    best_run = {kind: max(runs, key=lambda times: rate(mb, *_medians(times))) for kind, runs in bare.items()}
    best = {kind: _medians(times) for kind, times in best_run.items()}
    top = max(KINDS, key=lambda kind: rate(mb, *best[kind]))
    c_down, c_up = best[top]
    # CPU seconds the bare transport spent per GB it moved (2 sites, down and up: 4 x mb), all its processes
    cpu = {kind: (sum(t["cpu_s"] for t in times) + times[0]["server_cpu_s"]) / (4 * mb / 1000)
           for kind, times in best_run.items()}
    cpu_per_gb = cpu[top]
    cores = len(os.sched_getaffinity(0))
    out: dict[str, Any] = {
        "size_mb": mb, "streams": streams, "load_1m": round(load, 2),
        "ceiling_mb_s_per_site": round(rate(mb, c_down, c_up)), "ceiling_down_mb_s": round(mb / c_down),
        "ceiling_up_mb_s": round(mb / c_up), "ceiling_api": top,
        "ceiling_cpu_s_per_gb": round(cpu_per_gb, 2), "cores": cores,
        "cpu_bound_mb_s_per_site": round(500 * cores / cpu_per_gb),
        **{f"ceiling_{kind}_mb_s_per_site": round(rate(mb, *best[kind])) for kind in KINDS},
        **{f"ceiling_{kind}_cpu_s_per_gb": round(cpu[kind], 2) for kind in KINDS}}
    if flctl is not None:
        f_down, f_up = statistics.median(flctl["down_s"]), statistics.median(flctl["up_s"])
        a_down, a_up = statistics.median(flctl["all_down_s"]), statistics.median(flctl["all_up_s"])
        out.update({
            "flctl_all_rounds_mb_s_per_site": round(rate(mb, a_down, a_up)),
            "flctl_mb_s_per_site": round(rate(mb, f_down, f_up)), "flctl_down_mb_s": round(mb / f_down),
            "flctl_up_mb_s": round(mb / f_up), "ratio": round(rate(mb, f_down, f_up) / rate(mb, c_down, c_up), 3),
            "down_ratio": round(c_down / f_down, 3), "up_ratio": round(c_up / f_up, 3),
            "wall_s": round(flctl["wall_s"], 2), "round_s": round(flctl["round_s"], 2),
            "round_mb_s_per_site": round(2 * mb / flctl["round_s"]),
            "server_peak_mb": round(flctl["server_peak_mb"]), "server_peak_x": round(flctl["server_peak_mb"] / mb, 2),
            "server_overhead_mb": round(flctl["server_peak_mb"] - mb), "daemon_peak_mb": round(flctl["daemon_peak_mb"]),
            "job_peak_mb": round(flctl["job_peak_mb"]), "site_peak_mb": round(flctl["site_peak_mb"])})
    return out


def _medians(times: list[dict[str, float]]) -> tuple[float, float]:
    return statistics.median(t["down_s"] for t in times), statistics.median(t["up_s"] for t in times)


def main() -> None:
    if sys.argv[1:2] == ["--ceiling-server"]:  # the ceiling's server, which starts its sites
        print(json.dumps(asyncio.run(_ceiling(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))))
        return
    if sys.argv[1:2] == ["--ceiling-site"]:  # one site process of the ceiling
        ceiling_site(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="+", default=[100], help="model sizes in MB (MiB)")
    parser.add_argument("--rounds", type=int, default=5, help=f"FedAvg rounds (at least {STEADY + 1})")
    parser.add_argument("--streams", type=int, default=1, help="streams per model, both sides (model_streams)")
    parser.add_argument("--ceiling-only", action="store_true", help="measure the bare transport alone")
    parser.add_argument("--json", action="store_true", help="one JSON object per size, nothing else")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each size's kits, logs and job folders in DIR/<size>mb (a timeline to read)")
    args = parser.parse_args()
    if not args.json:
        print(f"{'MB':>5} {'K':>2} {'load':>5} | {'flctl MB/s/site':>15} {'down':>5} {'up':>5} | "
              f"{'bare MB/s/site':>14} {'down':>5} {'up':>5} | {'ratio':>5} | {'wall s':>6} {'round s':>7} | "
              f"{'server MB':>9} {'x':>5} {'site MB':>7}")
    for mb in args.mb:
        r = measure(mb, args.rounds, args.streams, args.ceiling_only, args.keep)
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        g = r.get
        print(f"{mb:>5} {args.streams:>2} {r['load_1m']:>5.2f} | {g('flctl_mb_s_per_site', '-'):>15} "
              f"{g('flctl_down_mb_s', '-'):>5} {g('flctl_up_mb_s', '-'):>5} | {r['ceiling_mb_s_per_site']:>14} "
              f"{r['ceiling_down_mb_s']:>5} {r['ceiling_up_mb_s']:>5} | {g('ratio', '-'):>5} | "
              f"{g('wall_s', '-'):>6} {g('round_s', '-'):>7} | {g('server_peak_mb', '-'):>9} "
              f"{g('server_peak_x', '-'):>5} {g('site_peak_mb', '-'):>7}", flush=True)


if __name__ == "__main__":
    main()
