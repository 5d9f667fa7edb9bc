"""What exporting a job's metrics costs on the server, measured in its own process as the feeder runs it.

Three figures: the exporter process's start (`python -m flctl.node.server.metrics_export.feeder` importing what
it needs for TensorBoard, beside `python -c pass`), the TensorBoard exporter's throughput (metric values a second
into event files, flctl's own encoder), and a store's rows read back by the feeder's read-only tail (values a
second). A job's metrics come at most `max_metrics_per_minute` (1200 by default) per site and minute, so the
throughputs say how many sites one exporter process keeps up with.

    .venv/bin/python bench/metrics_export.py                 # 200,000 values, 100 sites
    .venv/bin/python bench/metrics_export.py --values 50000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flctl.node.server.metrics_export.base import JobContext, MetricPoint
from flctl.node.server.metrics_export.feeder import MetricsTail
from flctl.node.server.metrics_export.tensorboard import TensorBoardExporter

STARTUP = ("import flctl.node.server.metrics_export.feeder, flctl.node.server.metrics_export.tensorboard, "
           "flctl.node.jobs.metrics_spec")


def points(count: int, sites: int) -> list[MetricPoint]:
    now = time.time()
    return [MetricPoint(f"site-{i % sites}", i // (sites * 10), f"m{i % 5}", 1.0 / (i + 1), i // sites, now)
            for i in range(count)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def start_s(repeats: int) -> float:
    """Median seconds the exporter process's imports add to the interpreter's start."""
    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - started

    own, bare = [], []
    for _ in range(repeats):
        own.append(run(STARTUP))
        bare.append(run("pass"))
    return median(own) - median(bare)


def tensorboard_rate(values: list[MetricPoint], folder: Path) -> float:
    job = JobContext("bench", "bench", folder, [], "fedavg")
    exporter = TensorBoardExporter(job)
    started = time.perf_counter()
    for at in range(0, len(values), 1000):  # the feeder's batches: what one poll of the store brings
        exporter.write(values[at:at + 1000])
    exporter.close("FINISHED")
    return len(values) / (time.perf_counter() - started)


def tail_rate(values: list[MetricPoint], folder: Path) -> float:
    db = folder / "server.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT)")
        conn.execute("CREATE TABLE job_sites (job_id TEXT, site TEXT, state TEXT)")
        conn.execute("CREATE TABLE metrics (job_id TEXT NOT NULL, site TEXT NOT NULL, round INTEGER NOT NULL, "
                     "name TEXT NOT NULL, value REAL NOT NULL, step INTEGER, time REAL NOT NULL)")
        conn.execute("CREATE INDEX metrics_job ON metrics (job_id)")
        conn.executemany("INSERT INTO metrics VALUES ('bench', ?, ?, ?, ?, ?, ?)",
                         [(p.site, p.round, p.name, p.value, p.step, p.time) for p in values])
    tail = MetricsTail(db, "bench")
    started = time.perf_counter()
    rowid, read = 0, 0
    while rows := tail.after(rowid):
        rowid, read = rows[-1][0], read + len(rows)
    tail.close()
    assert read == len(values)
    return read / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    values = points(args.values, args.sites)
    with tempfile.TemporaryDirectory() as tmp:
        figures = {"values": args.values, "sites": args.sites,
                   "feeder_start_s": round(start_s(args.repeats), 3),
                   "tensorboard_values_per_s": round(tensorboard_rate(values, Path(tmp))),
                   "store_tail_values_per_s": round(tail_rate(values, Path(tmp)))}
    for key, value in figures.items():
        print(f"{key:28} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
