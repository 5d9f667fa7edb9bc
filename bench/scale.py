"""How many sites one flctl server holds: N lightweight sites (many per process) against one real server.

    python bench/scale.py [--sites 1000] [--workers 8] [--rounds 1] [--interval 5] [--hold 0] [--workdir DIR] [--keep]
                          [--relays K]

Provisions a project with N sites, starts the server daemon from its kit (`flctl node start`),
then starts W worker processes that each run N/W sites on asyncio: every site has its own kit,
its own mutual-TLS channel, registers, heartbeats, holds its command stream, and answers FedAvg
tasks in-process (no job process per site: that is what makes them lightweight; the server side
is the real one). An admin then submits a FedAvg job over a tiny model with min_sites = N.
Prints: time for all sites to be online, with `--hold S` the server's CPU a second over S seconds of
idle sites, the job's round time (the server's own `started_at` to `ended_at`), the server's CPU
seconds and peak memory (daemon plus its job process), the sites' CPU seconds (they share the
machine with the server), and heartbeats missed (sites the server ever listed offline while the
job ran, heartbeat calls that failed at the sites, the slowest heartbeat call). Its work folder (kits,
logs) is removed after a good run unless given with `--workdir` or kept with `--keep`.
Goals (issue 9): the round under 10 s, server memory under 1.5 GB, no heartbeat missed.

With `--relays K` (issue 31) the project has K relays under the server (`relay-1`...), each a real relay daemon
(`flctl node start`), and the sites are dealt out to them in turn: the sites connect to their relays, the server
sees K participants, and the job runs on them (`min_sites` K). Also printed: the relays' CPU seconds and their
peak memory together. Run it with and without `--relays` to compare a flat federation with a two-level one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FLCTL = str(Path(sys.executable).parent / "flctl")
STOP_GRACE_S = 10.0  # how long a stopping site waits for its calls in flight to finish


# ---------------------------------------------------------------------------------------------- worker side
ANSWERS: dict[bytes, bytes] = {}
"""A task's model -> the answer to it (the model plus one): every site of a worker is sent the same model, so it is
worked out once a worker, not once a site (the sites are here to load the server, not this process)."""


def answer_to(model: bytes) -> bytes:
    import numpy as np

    from flctl.node.wire import tensors

    if model not in ANSWERS:
        params = tensors.decode(model) if model else {"w": np.zeros(10, np.float32)}
        ANSWERS[model] = tensors.encode({k: np.asarray(v) + 1 for k, v in params.items()})
    return ANSWERS[model]


async def answer_tasks(stub: Any, job_id: str, stats: dict[str, int], stop: asyncio.Event) -> None:
    """Poll the job's tasks and answer each with the model plus one, until the server says the job is done."""
    from flctl.node.security.tls import CHUNK
    from flctl.node.wire.proto import flctl_pb2 as pb

    last = ""
    while not stop.is_set():
        header, data = None, bytearray()
        async for message in stub.FetchTask(pb.TaskRequest(job_id=job_id, last_task_id=last), timeout=120):
            if message.HasField("header"):
                header = message.header
            else:
                data += message.chunk
        if header is None or header.done:
            return
        if not header.task_id:
            continue
        payload = answer_to(bytes(data))

        async def messages(task_id: str = header.task_id, payload: bytes = payload) -> Any:
            yield pb.ResultMessage(header=pb.ResultHeader(job_id=job_id, task_id=task_id, num_examples=1,
                                                          metrics={"loss": 0.5}, meta_json="{}", size=len(payload)))
            for start in range(0, len(payload), CHUNK):
                yield pb.ResultMessage(chunk=payload[start:start + CHUNK])

        await stub.SubmitResult(messages(), timeout=120)
        stats["results"] += 1
        last = header.task_id


async def heartbeats(stub: Any, interval_s: float, running: list[str], stats: dict[str, int],
                     stop: asyncio.Event) -> None:
    import grpc

    from flctl.node.wire.proto import flctl_pb2 as pb

    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if stop.is_set():
            return
        try:
            sent = time.monotonic()
            await stub.Heartbeat(pb.HeartbeatRequest(running_jobs=running), timeout=30)
            stats["heartbeats"] += 1
            stats["heartbeat_ms_max"] = max(stats["heartbeat_ms_max"], round((time.monotonic() - sent) * 1000))
        except grpc.aio.AioRpcError:
            stats["heartbeat_errors"] += 1


async def run_site(kit_path: Path, stats: dict[str, int], stop: asyncio.Event) -> None:
    """One lightweight site: register, heartbeat, follow its command stream, answer tasks in-process."""
    import grpc

    from flctl.node.config.kit import load_kit
    from flctl.node.security.tls import CHANNEL_OPTIONS
    from flctl.node.wire.proto import flctl_pb2 as pb
    from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc

    kit = load_kit(kit_path, verify=False)
    creds = grpc.ssl_channel_credentials(root_certificates=kit.ca_pem, private_key=kit.key_pem,
                                         certificate_chain=kit.cert_pem)
    async with grpc.aio.secure_channel(kit.target, creds, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.FederationStub(channel)
        reply = await stub.Register(pb.RegisterRequest(version="1"), timeout=120)
        stats["registered"] += 1
        running: list[str] = []
        jobs: list[asyncio.Task[None]] = []

        async def job(job_id: str) -> None:
            running.append(job_id)
            try:
                await answer_tasks(stub, job_id, stats, stop)
            finally:
                running.remove(job_id)

        async def commands() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for command in stub.Commands(pb.Empty()):
                    if command.HasField("start"):
                        jobs.append(asyncio.create_task(job(command.start.job_id)))

        tasks = [asyncio.create_task(heartbeats(stub, reply.heartbeat_interval_s, running, stats, stop)),
                 asyncio.create_task(commands())]
        await stop.wait()
        # A result the server took may still be waiting for its acknowledgement here when the driver stops the
        # workers (the job ended the moment the server had the last one): let those calls finish, then count.
        pending = [task for task in jobs if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_S)
        for task in tasks + jobs:
            task.cancel()
        await asyncio.gather(*tasks, *jobs, return_exceptions=True)


async def worker(kits: list[Path]) -> dict[str, int]:
    stats = {"registered": 0, "heartbeats": 0, "heartbeat_errors": 0, "heartbeat_ms_max": 0, "results": 0,
             "failed": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def guarded(kit: Path) -> None:
        try:
            await run_site(kit, stats, stop)
        except Exception as exc:  # noqa: BLE001 - counted and reported, the other sites go on
            stats["failed"] += 1
            print(f"{kit.name}: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)

    await asyncio.gather(*(guarded(k) for k in kits))
    return stats


# ---------------------------------------------------------------------------------------------- driver side
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def cpu_s(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / ticks


def provision_project(sites: list[str], interval_s: float, work: Path, relays: int = 0) -> Path:
    from flctl.provisioner.build import provision
    from flctl.provisioner.project_loader import project_from_document
    from flctl.provisioner.yaml_source import parse_yaml

    port = free_port()
    relay_lines = "".join(f"  - {{name: relay-{r}, org: org, host: 127.0.0.1, port: {free_port()}}}\n"
                          for r in range(1, relays + 1))
    parent = [f", parent: relay-{i % relays + 1}" if relays else "" for i in range(len(sites))]
    text = (f"api_version: 1\nname: scale\nserver: {{name: localhost, org: hub, port: {port}, hosts: [127.0.0.1]}}\n"
            + (f"relays:\n{relay_lines}" if relays else "")
            + "sites:\n" + "".join(f"  - {{name: {s}, org: org{p}}}\n" for s, p in zip(sites, parent, strict=True))
            + "admins:\n  - {name: admin@hub.org, org: hub, role: project_admin}\n"
            f"heartbeat: {{interval_s: {interval_s}, timeout_s: {interval_s * 3}}}\n")
    started = time.monotonic()
    prod = provision(project_from_document(parse_yaml(text, "project.yml")).project, work / "ws").prod_dir
    print(f"provisioned {len(sites)} sites{f' under {relays} relays' if relays else ''} in "
          f"{time.monotonic() - started:.1f} s ({work})")
    return Path(prod)


def write_job(work: Path, rounds: int, sites: int) -> Path:
    job = work / "job"
    (job / "app").mkdir(parents=True, exist_ok=True)
    (job / "app" / "train.py").write_text("# the lightweight sites answer in-process\n")
    (job / "job.yml").write_text(f"api_version: 1\nname: scale\nworkflow:\n  type: fedavg\n  args: {{rounds: "
                                 f"{rounds}, round_timeout_s: 120}}\nsites: all\nmin_sites: {sites}\n"
                                 "app:\n  command: [python, train.py]\n")
    return job


class Sampler(threading.Thread):
    """The peak resident memory of process trees together, sampled every 0.2 s."""

    def __init__(self, *pids: int) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak_mb, self.done = pids, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb([p for pid in self.pids for p in tree(pid)]))
            time.sleep(0.2)


def wait_server(admin: Any) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            admin.list_sites()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_online(admin: Any, count: int, work: Path) -> float:
    started = time.monotonic()
    while True:
        online = sum(s.online for s in admin.list_sites())
        if online == count:
            return time.monotonic() - started
        if time.monotonic() - started > 300:
            raise SystemExit(f"only {online} of {count} sites came online in 300 s; see {work}")
        time.sleep(0.5)


def follow_job(admin: Any, job_id: str, sites: int, timeout_s: float, work: Path) -> tuple[Any, float, int]:
    """Wait for the job to end, printing progress; (final info, seconds from RUNNING to end, fewest online).

    The round time is the server's own (`started_at` to `ended_at`), so how often this polls does not change it;
    it polls twice a second: a job's info carries every site's state, and the bench should not load the server
    more than an operator watching the job would."""
    submitted = said = checked = time.monotonic()
    min_online, online = sites, sites
    while True:
        info = admin.get_job(job_id)
        if info.ended:
            return info, info.ended_at - (info.started_at or info.submitted_at), min_online
        if time.monotonic() - checked >= 1:  # listing a thousand sites is itself load: once a second
            checked = time.monotonic()
            online = sum(s.online for s in admin.list_sites())
            min_online = min(min_online, online)
        if time.monotonic() - said > 5:
            said = time.monotonic()
            states: dict[str, int] = {}
            for site in info.sites:
                states[site.state] = states.get(site.state, 0) + 1
            print(f"  {said - submitted:5.1f} s: {info.status}, round {info.round}, {online} online, "
                  f"site states {states}", flush=True)
        if time.monotonic() - submitted > timeout_s:
            admin.abort_job(job_id)
            raise SystemExit(f"the job did not end within {timeout_s:.0f} s; aborted it; see {work}")
        time.sleep(0.5)


def idle_cost(server_pid: int, hold_s: float) -> float:
    """The server's CPU seconds a second over `hold_s` with the sites idle (heartbeats, command streams)."""
    before, started = cpu_s(tree(server_pid)), time.monotonic()
    time.sleep(hold_s)
    return (cpu_s(tree(server_pid)) - before) / (time.monotonic() - started)


def stop_all(workers: list[subprocess.Popen[str]], server: subprocess.Popen[bytes],
             relays: list[subprocess.Popen[bytes]] | None = None) -> dict[str, int]:
    """End the workers (collecting their counts), the relays and the server; every process this script started."""
    for proc in workers:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    totals: dict[str, int] = {}
    for proc in workers:
        try:
            out, _ = proc.communicate(timeout=30)
            for key, value in json.loads(out.strip().splitlines()[-1]).items():
                totals[key] = max(totals.get(key, 0), value) if key.endswith("_max") else totals.get(key, 0) + value
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            proc.kill()
            proc.wait()
    for relay in relays or []:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(relay.pid, signal.SIGTERM)
        try:
            relay.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(relay.pid, signal.SIGKILL)
            relay.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    return totals


def start_relays(prod: Path, count: int, work: Path) -> list[subprocess.Popen[bytes]]:
    """Start the relay daemons `relay-1`... from their kits, each logging to WORK/relay-N.log."""
    relays = []
    for r in range(1, count + 1):
        with open(work / f"relay-{r}.log", "ab") as log:
            relays.append(subprocess.Popen([FLCTL, "node", "start", str(prod / f"relay-{r}")], stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))
    return relays


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat interval (s)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--hold", type=float, default=0, help="seconds to hold the sites idle before the job")
    parser.add_argument("--timeout", type=float, default=300, help="give up on the job after this many seconds")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (kits, logs) after a good run")
    parser.add_argument("--relays", type=int, default=0, help="relays under the server, the sites dealt out to them")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        print(json.dumps(asyncio.run(worker([Path(k) for k in args.worker]))))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # clean up below when timed out from outside
    from flctl.node.admin.admin_client import AdminClient

    work = args.workdir or Path(tempfile.mkdtemp(prefix="flctl-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    sites = [f"site-{i}" for i in range(1, args.sites + 1)]
    prod = provision_project(sites, args.interval, work, args.relays)
    with open(work / "server.log", "ab") as log:
        server = subprocess.Popen([FLCTL, "node", "start", str(prod / "localhost")], stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    relays = start_relays(prod, args.relays, work)
    workers: list[subprocess.Popen[str]] = []
    done = False
    sampler, relay_sampler = Sampler(server.pid), Sampler(*(relay.pid for relay in relays))
    sampler.start()
    relay_sampler.start()
    try:
        admin = AdminClient.from_kit(prod / "admin@hub.org", timeout_s=60)
        wait_server(admin)
        cpu_before = cpu_s(tree(server.pid))
        with open(work / "workers.log", "a") as log:
            for i in range(args.workers):
                kits = [str(prod / s) for s in sites[i::args.workers]]
                workers.append(subprocess.Popen([sys.executable, __file__, "--worker", *kits],
                                                stdout=subprocess.PIPE, stderr=log, text=True))
        online_s = wait_online(admin, args.sites + args.relays, work)
        print(f"all {args.sites} sites{f' and {args.relays} relays' if args.relays else ''} online after "
              f"{online_s:.1f} s")
        if args.hold > 0:
            print(f"server with {args.sites} sites idle: {idle_cost(server.pid, args.hold):.2f} CPU s a second")
        worker_pids = [w.pid for w in workers]
        cpu_job, cpu_sites = cpu_s(tree(server.pid)), cpu_s(worker_pids)
        cpu_relays = cpu_s([r.pid for r in relays])
        submitted = time.monotonic()
        job_id = admin.submit_job(write_job(work, args.rounds, args.relays or args.sites))  # the server's own
        info, rounds_s, min_online = follow_job(admin, job_id, args.sites + args.relays, args.timeout, work)
        print(f"job {info.status} ({info.error or 'no error'}): submit to end {time.monotonic() - submitted:.2f} s; "
              f"{args.rounds} round(s) {rounds_s:.2f} s after RUNNING")
        print(f"server: {cpu_s(tree(server.pid)) - cpu_job:.1f} CPU s from submit to end, "
              f"{cpu_s(tree(server.pid)) - cpu_before:.1f} since the sites started connecting; "
              f"peak RSS {sampler.peak_mb:.0f} MB (daemon + job process)")
        print(f"relays: {cpu_s([r.pid for r in relays]) - cpu_relays:.1f} CPU s from submit to end; peak RSS "
              f"{relay_sampler.peak_mb:.0f} MB together ({args.relays} relays)" if relays else "relays: none (flat)")
        print(f"sites: {cpu_s(worker_pids) - cpu_sites:.1f} CPU s from submit to end ({args.workers} workers)")
        print(f"heartbeats: fewest sites{' and relays' if relays else ''} online while the job ran {min_online} of "
              f"{args.sites + args.relays}")
        done = True
    finally:
        sampler.done.set()
        relay_sampler.done.set()
        totals = stop_all(workers, server, relays)
        if totals:
            print(f"sites: {totals}")
    if done and args.workdir is None and not args.keep:  # a failed run keeps it (the messages point there)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
