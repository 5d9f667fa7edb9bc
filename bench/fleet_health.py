"""What the server's fleet-health features cost at scale: one Prometheus scrape (collect and render the text) and
one alert check, over a store holding N sites and J jobs of R rounds each (their events), plus the server's own and
the admins' certificates. Nothing of these runs on a site's path; this is what a scrape or a check costs the
server's CPU.

    .venv/bin/python bench/fleet_health.py                         # 1,000 sites, 200 jobs x 10 rounds
    .venv/bin/python bench/fleet_health.py --sites 5000 --jobs 1000 --rounds 20 --repeats 5

Needs the telemetry extra (prometheus-client).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from flctl.node.config.alerts import AlertsSpec
from flctl.node.jobs.job_status import JobStatus
from flctl.node.server.alerting import Alerting
from flctl.node.server.disk_guard import DiskGuard
from flctl.node.server.prometheus_endpoint import FleetCollector
from flctl.node.server.store import JobRow, Store
from flctl.node.server.traffic import Traffic


def fill(store: Store, sites: int, jobs: int, rounds: int) -> None:
    now = time.time()
    for i in range(sites):
        store.touch_site(f"site-{i}", f"org-{i % 50}", now + 200 * 86400, register=True)
    for a in range(20):
        store.record_admin(f"admin-{a}@x.org", "x", "member", now + 20 * 86400)
    for j in range(jobs):
        job_id = f"{j:08x}-0000-0000-0000-000000000000"
        store.add_job(JobRow(job_id, f"job-{j}", JobStatus.FINISHED if j % 5 else JobStatus.FAILED, "a", "x",
                             "member", now, now, now, rounds - 1, rounds, "fedavg", 2, "all", "", "", "0" * 64, {}))
        for r in range(rounds):
            store.add_event(job_id, "task", "", {"round": r, "task": "train"})
            store.add_event(job_id, "round", "", {"round": r, "metrics": {}})
    store.flush()


def context(store: Store, workspace: Path) -> Any:
    """What the collector and the alert loop read of the server's context."""
    info = SimpleNamespace(name="server", org="hub", not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=300))
    return SimpleNamespace(store=store, kit=SimpleNamespace(info=info), traffic=Traffic(), workspace=workspace,
                           project="bench", disk=DiskGuard(workspace, 0),
                           online=lambda site, now=None, since=0.0: (now or time.time()) - site.last_heartbeat < 30)


def timed(action: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("flctl.server").setLevel(logging.ERROR)  # the alert check's lines, one per certificate
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "server.db")
        fill(store, args.sites, args.jobs, args.rounds)
        ctx = context(store, Path(tmp))
        collector = FleetCollector(ctx)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        first = timed(lambda: generate_latest(registry), 1)  # reads every event once
        scrape = timed(lambda: generate_latest(registry), args.repeats)
        size = len(generate_latest(registry))
        alerting = Alerting(ctx, AlertsSpec())
        check = timed(lambda: alerting.check(time.time()), args.repeats)
        store.close()
    print(f"{args.sites} sites, {args.jobs} jobs x {args.rounds} rounds ({2 * args.jobs * args.rounds} events), "
          f"{args.sites + 21} certificates; Python {sys.version.split()[0]}")
    print(f"first scrape (every event read once): {first * 1000:.0f} ms")
    print(f"scrape (median of {args.repeats}): {scrape * 1000:.0f} ms, {size / 1024:.0f} KiB of text")
    print(f"alert check (median of {args.repeats}): {check * 1000:.0f} ms")


if __name__ == "__main__":
    main()
