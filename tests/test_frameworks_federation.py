"""Federated XGBoost (histogram mode) and k-means on a real local federation (gRPC, mTLS, a job process per site):
every histogram and every per-centre sum goes over flctl's own connections, and the results are those of XGBoost and
scikit-learn on the pooled rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flctl.node.admin.admin_client import AdminClient
from flctl.node.client.api_extras.xgb import load_booster
from flctl.node.wire import tensors

from .conftest import ROOT
from .federation import make_federation, running
from .test_example_jobs import load_script

xgb = pytest.importorskip("xgboost", reason="needs the frameworks extra: bash scripts/setup.sh --all")
sklearn_cluster = pytest.importorskip("sklearn.cluster", reason="needs the frameworks extra")
JOBS = ROOT / "playbooks" / "jobs"


def job_folder(root: Path, name: str, example: Path, workflow: dict[str, object], command: str,
               env: dict[str, str]) -> Path:
    folder = root / name
    shutil.copytree(example / "app", folder / "app")
    (folder / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {json.dumps(workflow)}\nmin_sites: 2\n"
                                    f"app: {{command: [python, {command}], env: {json.dumps(env)}}}\n")
    return folder


def test_xgboost_and_kmeans_on_a_real_federation_equal_the_pooled_runs(tmp_path: Path, monkeypatch):
    """2 sites over mTLS: histogram XGBoost (3 rounds, depth 3, features rounded: the pooled cuts) predicts the pooled
    rows as xgboost.train on them, within 1e-5; k-means' centres are sklearn's from the same start, within 1e-9;
    `flctl job show` prints the k-means outcome."""
    # Prepare
    xgb_script = load_script(JOBS / "xgboost" / "app" / "train.py", monkeypatch)
    tabular = load_script(JOBS / "sklearn" / "app" / "tabular.py", monkeypatch)
    sites = ["site-1", "site-2"]
    params = {"max_depth": 3, "max_bin": 1024}
    boosting = job_folder(tmp_path, "xgb", JOBS / "xgboost",
                          {"type": "xgboost", "args": {"mode": "histogram", "rounds": 3, "params": params,
                                                       "round_timeout_s": 60}},
                          "train.py", {"FLCTL_XGB_ROWS": "800", "FLCTL_XGB_DECIMALS": "1"})
    clustering = job_folder(tmp_path, "km", JOBS / "sklearn",
                            {"type": "kmeans", "args": {"clusters": 4, "rounds": 100, "round_timeout_s": 60}},
                            "kmeans.py", {"FLCTL_KMEANS_ROWS": "200"})
    fed_def = make_federation(tmp_path, sites=2)
    with running(fed_def), AdminClient.from_kit(fed_def.admin_kit) as admin:
        # Execute
        infos, downloaded = {}, {}
        for folder in (boosting, clustering):
            job_id = admin.submit_job(folder)
            list(admin.watch(job_id))
            infos[folder.name] = admin.get_job(job_id)
            downloaded[folder.name] = admin.download_job(job_id, tmp_path / "out" / folder.name)
            shown = fed_def.flctl("job", "show", job_id)
    # Assert
    for info in infos.values():
        assert info.status == "FINISHED", info.error + fed_def.logs()
    parts = [xgb_script.site_table(site, 800, 8, 1) for site in sites]
    pooled = xgb.DMatrix(np.concatenate([x for x, _ in parts]), label=np.concatenate([y for _, y in parts]))
    reference = xgb.train({"objective": "binary:logistic", "eta": 0.3, "max_depth": 3, "lambda": 1.0,
                           "min_child_weight": 1.0, "max_bin": 1024, "base_score": 0.5, "tree_method": "hist"},
                          pooled, 3)
    federated = load_booster(downloaded["xgb"] / "models" / "final.safetensors")
    assert infos["xgb"].reports["xgboost"]["trees"] == 3
    np.testing.assert_allclose(federated.predict(pooled), reference.predict(pooled), rtol=0, atol=1e-5)
    report = infos["km"].reports["kmeans"]
    points = np.concatenate([tabular.blobs(site, 200) for site in sites])
    expected = sklearn_cluster.KMeans(4, init=np.array(report["initial_centers"]), n_init=1, max_iter=100, tol=0.0,
                                      algorithm="lloyd").fit(points).cluster_centers_
    centers = tensors.decode((downloaded["km"] / "models" / "final.safetensors").read_bytes())["centers"]
    assert report["converged"] and sum(report["cluster_sizes"]) == len(points)
    np.testing.assert_allclose(centers, expected, rtol=0, atol=1e-9)
    assert "k-means: converged after" in shown.stdout, shown.stdout + shown.stderr


def test_job_shows_tables_name_each_sites_figures():
    """`flctl job show`'s tables for the classic-ML reports: k-means' clusters, xgboost's and ditto's per site."""
    # Prepare
    from flctl.console.cli.job.frameworks_view import tables

    reports = {"kmeans": {"converged": True, "iterations": 7, "inertia": 12.5, "cluster_sizes": [3, 4]},
               "xgboost": {"mode": "histogram", "trees": 5, "sites": {"b": {"auc": 0.9}, "a": {"auc": 0.8}}},
               "ditto": {"lambda": 0.5, "sites": {"a": {"global": {"loss": 2.0}, "personal": {"loss": 1.0}}}}}
    # Execute
    shown = tables(reports)
    # Assert
    assert shown[0] == ("k-means: converged after 7 iterations, inertia 12.5", ["cluster", "points"], [(0, 3), (1, 4)])
    assert shown[1][1:] == (["site", "auc"], [("a", "0.8"), ("b", "0.9")]) and "5 trees" in shown[1][0]
    assert shown[2][1:] == (["site", "global loss", "personal loss"], [("a", "2", "1")])
