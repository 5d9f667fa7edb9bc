"""Federated XGBoost and k-means against the same training on the pooled rows: wall time and the model's quality.

- XGBoost: 3 sites, 100,002 rows in all (33,334 each) of a 20-feature fraud-like table (playbooks/jobs/xgboost),
  50 rounds, depth 6, eta 0.3, max_bin 256, in `flctl simulate` (in process, the sites as forked workers): histogram
  mode and bagging mode, against `xgboost.train` on the pooled rows with the same parameters. Quality: AUC and log
  loss on 30,000 rows no site holds. The features are continuous, so the histogram mode's cuts come from merged
  quantile summaries, not from XGBoost's own sketch: the difference printed is what that costs. For scale, the
  pooled run with max_bin 255 instead of 256 (its cuts moved a little) is printed too.
- k-means: 3 sites x 33,334 two-dimensional points (playbooks/jobs/sklearn, four blobs), k = 4, against
  scikit-learn's KMeans(n_init=1, algorithm="lloyd", tol=0) on the pooled points from the centres the federated
  run started from: the largest centre difference and the inertia of each.

    .venv/bin/python bench/frameworks.py                  # both
    .venv/bin/python bench/frameworks.py --only xgboost --rounds 20

Run it with the interpreter that has flctl and the frameworks extra installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SITES = ["site-1", "site-2", "site-3"]
ROWS = 33_334
FEATURES = 20


def load(path: Path, name: str) -> Any:
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_job(folder: Path, workspace: Path) -> tuple[Path, float]:
    from flctl.node.jobs.job_spec import load_job
    from flctl.node.simulator.runtime import simulate

    started = time.perf_counter()
    result = simulate(load_job(folder), SITES, workspace)
    wall = time.perf_counter() - started
    if result.status != "FINISHED":
        raise SystemExit(f"{folder.name}: {result.error}")
    return result.job_dir, wall


def xgboost_bench(rounds: int, root: Path) -> None:
    import xgboost as xgb

    from flctl.node.frameworks.xgb_hist import BoostParams, auc
    from flctl.node.wire import tensors

    script = load(ROOT / "playbooks" / "jobs" / "xgboost" / "app" / "train.py", "xgb_train")
    parts = [script.site_table(site, ROWS, FEATURES) for site in SITES]
    test_x, test_y = script.site_table("held-out", 30_000, FEATURES)
    params = BoostParams()
    started = time.perf_counter()
    pooled = xgb.train({**params.xgboost_params(), "nthread": 1},
                       xgb.DMatrix(np.concatenate([x for x, _ in parts]), label=np.concatenate([y for _, y in parts])),
                       rounds)
    pooled_wall = time.perf_counter() - started
    test = xgb.DMatrix(test_x, label=test_y)

    def quality(booster: Any) -> tuple[float, float]:
        p = np.clip(booster.predict(test), 1e-15, 1 - 1e-15)
        return auc(test_y, p), float(-np.mean(test_y * np.log(p) + (1 - test_y) * np.log(1 - p)))

    base_auc, base_loss = quality(pooled)
    print(f"XGBoost, 3 sites x {ROWS:,} rows, {FEATURES} features, {rounds} rounds, depth 6 "
          f"({int(np.concatenate([y for _, y in parts]).mean() * 100)}% positives); test: 30,000 other rows")
    print(f"  {'run':<30} {'wall s':>8} {'AUC':>8} {'log loss':>9} {'AUC diff':>9}")
    print(f"  {'pooled xgboost.train (1 thread)':<30} {pooled_wall:>8.1f} {base_auc:>8.4f} {base_loss:>9.4f} "
          f"{0:>9.4f}")
    other = xgb.train({**params.xgboost_params(), "nthread": 1, "max_bin": 255},
                      xgb.DMatrix(np.concatenate([x for x, _ in parts]), label=np.concatenate([y for _, y in parts])),
                      rounds)
    other_auc, other_loss = quality(other)
    print(f"  {'pooled, max_bin 255 (cuts moved)':<30} {'':>8} {other_auc:>8.4f} {other_loss:>9.4f} "
          f"{other_auc - base_auc:>+9.4f}")
    for mode in ("histogram", "bagging"):
        folder = root / f"xgb-{mode}"
        shutil.copytree(ROOT / "playbooks" / "jobs" / "xgboost" / "app", folder / "app")
        args = {"mode": mode, "rounds": rounds, "params": {"max_depth": 6}, "round_timeout_s": 600}
        (folder / "job.yml").write_text(
            f"api_version: 1\nname: xgb-{mode}\nworkflow: {{type: xgboost, args: {json.dumps(args)}}}\n"
            f"app: {{command: [python, train.py], env: {{FLCTL_XGB_ROWS: '{ROWS}', FLCTL_XGB_FEATURES: "
            f"'{FEATURES}'}}}}\n")
        job_dir, wall = run_job(folder, root / "ws")
        model = tensors.decode((job_dir / "models" / "final.safetensors").read_bytes())["model_json"]
        booster = xgb.Booster()
        booster.load_model(bytearray(np.asarray(model, np.uint8).tobytes()))
        fed_auc, fed_loss = quality(booster)
        print(f"  {'flctl simulate, ' + mode:<30} {wall:>8.1f} {fed_auc:>8.4f} {fed_loss:>9.4f} "
              f"{fed_auc - base_auc:>+9.4f}")


def kmeans_bench(root: Path) -> None:
    from sklearn.cluster import KMeans  # type: ignore[import-untyped]

    from flctl.node.frameworks.kmeans import site_sums
    from flctl.node.wire import tensors

    data = load(ROOT / "playbooks" / "jobs" / "sklearn" / "app" / "tabular.py", "tabular")
    pooled = np.concatenate([data.blobs(site, ROWS) for site in SITES])
    folder = root / "kmeans"
    shutil.copytree(ROOT / "playbooks" / "jobs" / "sklearn" / "app", folder / "app")
    (folder / "job.yml").write_text(
        "api_version: 1\nname: kmeans\nworkflow: {type: kmeans, args: {clusters: 4, rounds: 300}}\n"
        f"app: {{command: [python, kmeans.py], env: {{FLCTL_KMEANS_ROWS: '{ROWS}'}}}}\n")
    job_dir, wall = run_job(folder, root / "ws")
    report = json.loads((job_dir / "reports" / "kmeans.json").read_text())
    centers = tensors.decode((job_dir / "models" / "final.safetensors").read_bytes())["centers"]
    started = time.perf_counter()
    reference = KMeans(4, init=np.array(report["initial_centers"]), n_init=1, max_iter=300, tol=0.0,
                       algorithm="lloyd").fit(pooled)
    pooled_wall = time.perf_counter() - started
    _, _, inertia = site_sums(pooled, centers)
    print(f"k-means, 3 sites x {ROWS:,} points, 2 features, k = 4, from the same initial centres")
    print(f"  {'run':<30} {'wall s':>8} {'iterations':>10} {'inertia':>14}")
    print(f"  {'pooled sklearn KMeans':<30} {pooled_wall:>8.2f} {reference.n_iter_:>10} {reference.inertia_:>14.6f}")
    print(f"  {'flctl simulate, kmeans':<30} {wall:>8.2f} {report['iterations']:>10} {inertia:>14.6f}")
    print(f"  largest centre difference: {np.abs(centers - reference.cluster_centers_).max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("xgboost", "kmeans"))
    parser.add_argument("--rounds", type=int, default=50, help="XGBoost rounds (50)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flctl-bench-frameworks-"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        if args.only in (None, "xgboost"):
            xgboost_bench(args.rounds, root)
        if args.only in (None, "kmeans"):
            kmeans_bench(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
