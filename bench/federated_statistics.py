"""Federated statistics at scale: 1,000 simulated sites x 10,000 rows x 10 features, every statistic (count, sum,
mean, variance, stddev, min, max, failure_count, 20-bin histograms, quantiles 0.1/0.5/0.9 and a cohort), each site
applying the default privacy rules (min_count 10, max_bins_percent 10, min/max noise). Wall time and the peak of
the summed RSS of the whole process tree (`flctl simulate`, sampled from /proc every 50 ms). Then the same job at
3 sites on a local federation (`flctl poc`: real processes, gRPC over mTLS): submit to finished.

    .venv/bin/python bench/federated_statistics.py            # 1,000 sites on 2 workers, then 3 sites over mTLS
    .venv/bin/python bench/federated_statistics.py --sites 100 --no-poc  # smaller
    .venv/bin/python bench/federated_statistics.py --json out.json

Goal (issue 22): the thousand sites in under 30 s and 2 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _sampler() -> Any:
    """bench/simulate.py, for its process-tree sampler `measure`: loaded by path, since this file's name would hide
    the standard library's `statistics` from it if bench/ stayed first on sys.path."""
    import importlib.util

    here = str(Path(__file__).parent)
    sys.path[:] = [p for p in sys.path if p != here]
    spec = importlib.util.spec_from_file_location("bench_simulate", Path(here) / "simulate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SIMULATE = _sampler()
FLCTL: str = _SIMULATE.FLCTL
measure = _SIMULATE.measure

SCRIPT = """
import os
import zlib

import numpy as np

import flctl.client as fl

ROWS = int(os.environ.get("ROWS", "10000"))
FEATURES = int(os.environ.get("FEATURES", "10"))


def load():
    rng = np.random.default_rng(zlib.crc32(fl.site_name().encode()))
    data = {f"f{i}": rng.normal(i, 1 + i, ROWS) for i in range(FEATURES)}
    for values in data.values():
        values[rng.random(ROWS) < 0.01] = np.nan
    return data


if __name__ == "__main__":
    fl.serve_statistics(load)
"""


def job_folder(root: Path, rows: int, features: int, min_sites: int) -> Path:
    folder = root / "stats-bench"
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "app" / "stats.py").write_text(SCRIPT)
    args = {"statistics": {"count": {}, "sum": {}, "mean": {}, "variance": {}, "stddev": {}, "min": {}, "max": {},
                           "failure_count": {}, "histogram": {"*": {"bins": 20}}, "quantile": {"*": [0.1, 0.5, 0.9]},
                           "cohort": {"high": "f0 > 1 and f1 < 0"}},
            "timeout_s": 600}
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: stats-bench\nworkflow: {{type: statistics, args: {json.dumps(args)}}}\n"
        f"min_sites: {min_sites}\napp: {{command: [python, stats.py], env: {{ROWS: '{rows}', "
        f"FEATURES: '{features}'}}}}\n")
    return folder


def simulated(root: Path, sites: int, rows: int, features: int, workers: int) -> dict[str, Any]:
    job = job_folder(root, rows, features, min_sites=sites)
    run = measure([FLCTL, "simulate", str(job), "-n", str(sites), "--workers", str(workers), "-w",
                   str(root / "sim"), "--json"], timeout=900)
    if run["rc"] != 0:
        raise SystemExit(f"flctl simulate failed: {run['tail']}")
    report = json.loads((root / "sim" / "stats-bench" / "reports" / "statistics.json").read_text())
    glob = report["results"]["global"]
    return {"sites": sites, "rows": rows, "features": features, "workers": workers, "wall_s": round(run["wall_s"], 2),
            "peak_rss_mb": round(run["peak_rss_mb"]), "records": sum(glob[f]["count"] for f in report["features"]),
            "failed": len(report["failed"]), "refused": sum(len(v) for v in report["refused"].values()),
            "f0_mean": glob["f0"]["mean"], "f9_variance": glob["f9"]["variance"]}


def local_federation(root: Path, sites: int, rows: int, features: int) -> dict[str, Any]:
    """`flctl poc` with `sites` sites: the statistics job from submit to finished (seconds)."""
    env = {**os.environ, "FLCTL_POC_WORKSPACE": str(root / "poc")}
    env.pop("FLCTL_KIT", None)

    def flctl(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        began = time.monotonic()
        done = subprocess.run([FLCTL, *args], capture_output=True, text=True, env=env, timeout=600, check=False)
        if done.returncode != 0:
            raise SystemExit(f"flctl {' '.join(args)} failed: {done.stderr}")
        return time.monotonic() - began, done

    flctl("poc", "prepare", "-n", str(sites))
    try:
        flctl("poc", "start", "--json")
        submit_s, submitted = flctl("job", "submit", str(job_folder(root, rows, features, sites)), "--watch",
                                    "--json")
        job_id = json.loads(submitted.stdout)["id"]
        _, shown = flctl("job", "show", job_id, "--json")
        info = json.loads(shown.stdout)
    finally:
        flctl("poc", "stop")
    flctl("poc", "clean")
    return {"sites": sites, "rows": rows, "status": info["status"], "submit_to_finished_s": round(submit_s, 2),
            "started_to_ended_s": round(info["ended_at"] - info["started_at"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-poc", action="store_true", help="skip the local federation")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flctl-stats-bench-") as tmp:
        root = Path(tmp)
        sim = simulated(root, args.sites, args.rows, args.features, args.workers)
        print(f"simulated: {sim['sites']} sites x {sim['rows']} rows x {sim['features']} features, every statistic, "
              f"{sim['workers']} workers: {sim['wall_s']:.2f} s wall, peak RSS {sim['peak_rss_mb']} MB "
              f"({sim['records']} values counted, {sim['failed']} sites failed, {sim['refused']} refusals)")
        poc = None if args.no_poc else local_federation(root, 3, args.rows, args.features)
        if poc is not None:
            print(f"local federation (3 sites, real processes, mTLS): {poc['status']}, submit to finished "
                  f"{poc['submit_to_finished_s']:.2f} s (running {poc['started_to_ended_s']:.2f} s)")
    if args.json:
        args.json.write_text(json.dumps({"simulated": sim, "local_federation": poc}, indent=1) + "\n")


if __name__ == "__main__":
    main()
