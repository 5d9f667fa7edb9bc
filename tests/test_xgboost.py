"""Federated XGBoost against XGBoost on the pooled rows: histogram mode gives the pooled model (3 simulated sites of a
fraud-like table, every feature with at most max_bin distinct values: predictions within 1e-5), bagging mode the
forest of every site's trees; the cuts, the split finder and the site checks on fixed inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flctl.node.client.api_extras.xgb import load_booster
from flctl.node.frameworks import xgb_hist, xgb_json
from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.tasks import TaskResult
from flctl.node.simulator.runtime import simulate
from flctl.node.wire import tensors
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.xgboost import XGBoost, XGBoostArgs

from .conftest import ROOT
from .test_example_jobs import load_script
from .test_fedavg import FakeFederation

xgb = pytest.importorskip("xgboost", reason="needs the frameworks extra: bash scripts/setup.sh --all")
EXAMPLE = ROOT / "playbooks" / "jobs" / "xgboost"
SITES = ["site-1", "site-2", "site-3"]
TOLERANCE = 1e-5
"""The largest difference allowed between a federated and a pooled prediction (a probability): float32 sums taken
in another order; measured 1.2e-7."""


def job(root: Path, mode: str, rounds: int, params: dict[str, object], rows: int, decimals: int | None) -> Path:
    folder = root / f"xgb-{mode}"
    shutil.copytree(EXAMPLE / "app", folder / "app")
    env = {"FLCTL_XGB_ROWS": str(rows), **({"FLCTL_XGB_DECIMALS": str(decimals)} if decimals is not None else {})}
    args = {"mode": mode, "rounds": rounds, "params": params, "round_timeout_s": 60}
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: xgb-{mode}\nworkflow: {{type: xgboost, args: {json.dumps(args)}}}\n"
        f"min_sites: 2\napp: {{command: [python, train.py], env: {json.dumps(env)}}}\n")
    return folder


def booster(job_dir: Path):
    return load_booster(job_dir / "models" / "final.safetensors")


def test_histogram_mode_gives_xgboost_on_the_pooled_rows(tmp_path, monkeypatch):
    """3 sites x 1500 rows, 8 features rounded to 1 decimal (under 1024 distinct values each: the pooled cuts),
    6 rounds, depth 4: the same trees (node counts) and every pooled row's probability within TOLERANCE."""
    # Prepare
    script = load_script(EXAMPLE / "app" / "train.py", monkeypatch)
    params = {"objective": "binary:logistic", "eta": 0.3, "max_depth": 4, "max_bin": 1024}
    parts = [script.site_table(site, 1500, 8, 1) for site in SITES]
    pooled = xgb.DMatrix(np.concatenate([x for x, _ in parts]), label=np.concatenate([y for _, y in parts]))
    reference = xgb.train(xgb_hist.BoostParams(max_depth=4, max_bin=1024).xgboost_params(), pooled, 6)
    # Execute
    result = simulate(load_job(job(tmp_path, "histogram", 6, params, 1500, 1)), SITES, tmp_path / "ws", 1)
    # Assert
    assert result.status == "FINISHED", result.error
    federated = booster(result.job_dir)
    np.testing.assert_allclose(federated.predict(pooled), reference.predict(pooled), rtol=0, atol=TOLERANCE)
    sizes = [len(t["left_children"]) for t in xgb_json.trees(json.loads(bytes(reference.save_raw("json"))))]
    model = tensors.decode((result.job_dir / "models" / "final.safetensors").read_bytes())["model_json"]
    assert [len(t["left_children"]) for t in xgb_json.trees(xgb_json.from_array(model))] == sizes
    report = json.loads((result.job_dir / "reports" / "xgboost.json").read_text())
    assert report["trees"] == 6 and report["mode"] == "histogram"
    assert set(report["sites"]) == set(SITES) and 0.5 < report["sites"]["site-1"]["auc"] <= 1


def test_bagging_mode_adds_every_sites_trees_to_one_forest(tmp_path, monkeypatch):
    """2 rounds: 2 x 3 trees, each site's boosted from the global model with eta scaled by its share of the rows,
    in site order: the forest a plain XGBoost loop over the sites makes."""
    # Prepare
    script = load_script(EXAMPLE / "app" / "train.py", monkeypatch)
    params = xgb_hist.BoostParams(max_depth=3)
    parts = {site: script.site_table(site, 500, 8, None) for site in SITES}
    total = sum(len(y) for _, y in parts.values())
    model = None
    for _ in range(2):
        new = []
        for x, y in parts.values():
            start = len(xgb_json.trees(model)) if model else 0
            base = None
            if model and start:
                base = xgb.Booster()
                base.load_model(bytearray(json.dumps(model).encode()))
            trained = xgb.train({**params.xgboost_params(), "eta": 0.3 * len(y) / total}, xgb.DMatrix(x, label=y), 1,
                                xgb_model=base)
            whole = json.loads(bytes(trained.save_raw("json")))
            model = model or xgb_json.empty(whole)
            new += xgb_json.trees(whole)[start:]
        model = xgb_json.append(model, new)
    expected = xgb.Booster()
    expected.load_model(bytearray(json.dumps(model).encode()))
    pooled = xgb.DMatrix(np.concatenate([x for x, _ in parts.values()]))
    # Execute
    result = simulate(load_job(job(tmp_path, "bagging", 2, {"max_depth": 3}, 500, None)), SITES, tmp_path / "ws", 1)
    # Assert
    assert result.status == "FINISHED", result.error
    federated = booster(result.job_dir)
    assert federated.num_boosted_rounds() == 6
    np.testing.assert_allclose(federated.predict(pooled, output_margin=True),
                               expected.predict(pooled, output_margin=True), rtol=0, atol=1e-6)


def test_cuts_are_xgboosts_when_every_value_fits_in_max_bin():
    """Two sites' summaries merged: the pooled DMatrix's cuts (its min sentinel aside), float32 and the upper
    sentinel included; more distinct values than max_bin: max_bin cuts at most, increasing."""
    # Prepare
    rng = np.random.default_rng(5)
    a, b = np.round(rng.standard_normal((300, 3)), 1), np.round(rng.standard_normal((200, 3)) + 1, 1)
    pooled = xgb.DMatrix(np.concatenate([a, b]), label=np.zeros(500))
    xgb.train({"tree_method": "hist", "max_bin": 256}, pooled, 1)  # makes the cuts
    indptr, values = pooled.get_quantile_cut()
    wide = rng.standard_normal((3000, 1))
    # Execute
    cuts = xgb_hist.merge_cuts([xgb_hist.summary(a, 256), xgb_hist.summary(b, 256)], 256)
    few = xgb_hist.merge_cuts([xgb_hist.summary(wide, 16)], 16)
    # Assert
    for f in range(3):
        np.testing.assert_array_equal(cuts[f], values[indptr[f] + 1:indptr[f + 1]])
    assert len(few[0]) <= 16 and np.all(np.diff(few[0]) > 0) and few[0][-1] > wide.max()


def test_the_split_is_the_brute_force_best_and_ties_go_to_the_lower_feature():
    """A node's histogram over 2 features x 3 bins: the split maximising G_L²/(H_L+λ) + G_R²/(H_R+λ) - G²/(H+λ)
    over every valid (feature, bin), and the leaf weights -G/(H+λ)."""
    # Prepare
    hist = np.array([[[-2.0, 1.0], [1.0, 1.0], [1.5, 1.0]],
                     [[-2.0, 1.0], [1.0, 1.0], [1.5, 1.0]]])  # feature 1 ties feature 0
    cuts = [np.array([0.5, 1.5, 9.0], np.float32)] * 2
    params = xgb_hist.BoostParams(reg_lambda=1.0, min_child_weight=0.5)
    g, h = 0.5, 3.0
    candidates = {}
    for b in range(2):
        gl, hl = hist[0, :b + 1, 0].sum(), hist[0, :b + 1, 1].sum()
        candidates[b] = gl**2 / (hl + 1) + (g - gl) ** 2 / (h - hl + 1) - g**2 / (h + 1)
    best_bin = max(candidates, key=candidates.__getitem__)
    # Execute
    change, feature, split_bin, left, right = xgb_hist.best_split(hist, cuts, params)  # type: ignore[misc]
    # Assert
    assert (feature, split_bin) == (0, best_bin)
    assert change == pytest.approx(candidates[best_bin], rel=1e-6)
    assert xgb_hist.leaf_weight(*left, params) == pytest.approx(-left[0] / (left[1] + 1), rel=1e-6)
    assert (left[0] + right[0], left[1] + right[1]) == pytest.approx((g, h))
    assert xgb_hist.best_split(np.zeros((1, 3, 2)), cuts[:1], params) is None


def test_a_site_without_the_helper_fails_the_job_naming_it():
    """A script answering with a plain model: the job fails at the first step, naming the site and what to use."""
    # Prepare
    fed = FakeFederation({"a": lambda task: TaskResult("a", {"w": np.zeros(1)}, 1)})
    # Execute / Assert
    assert WORKFLOWS["xgboost"] is XGBoost
    with pytest.raises(WorkflowError, match=r"a \(sent an unusable answer: no XGBoost model template.*xgb.serve"):
        XGBoost(XGBoostArgs(rounds=1)).run(fed, None)
    with pytest.raises(ValueError, match="mode"):
        XGBoost.parse_args({"rounds": 1, "mode": "vertical"})
    assert XGBoost.parse_args({"rounds": 1, "params": {"lambda": 2.0}}).params.reg_lambda == 2.0  # type: ignore[attr-defined]


def in_memory_sites(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> FakeFederation:
    """Each site an XGBoostSite (the helper its script runs) answering in this process."""
    from types import SimpleNamespace

    from flctl.node.client.api_extras.xgb import XGBoostSite

    def site(name: str, helper: XGBoostSite):
        def answer(task):
            model = helper.answer(SimpleNamespace(meta=task.meta, params=task.params))
            return TaskResult(name, model.params, model.num_examples, model.metrics)
        return answer

    return FakeFederation({name: site(name, XGBoostSite(x, y)) for name, (x, y) in parts.items()})


@pytest.mark.parametrize("mode", ["histogram", "bagging"])
def test_a_restarted_job_resumes_to_the_same_model(monkeypatch, mode):
    """4 rounds straight, and 2 rounds then a restart from round 2's checkpoint with fresh sites (their scripts
    restarted too: the bin step rebuilds their margins from the model): the same final model."""
    # Prepare
    script = load_script(EXAMPLE / "app" / "train.py", monkeypatch)
    parts = {site: script.site_table(site, 300, 8, None) for site in SITES[:2]}
    args = XGBoostArgs(mode=mode, rounds=4, params={"max_depth": 3})  # type: ignore[arg-type]
    # Execute
    straight = XGBoost(args).run(in_memory_sites(parts), None)
    first = in_memory_sites(parts)
    XGBoost(XGBoostArgs(mode=mode, rounds=2, params={"max_depth": 3})).run(first, None)  # type: ignore[arg-type]
    resumed = XGBoost(args).run(in_memory_sites(parts), first.models["round-1"], start_round=2)
    # Assert
    rows = xgb.DMatrix(np.concatenate([x for x, _ in parts.values()]))
    expected = load_booster(straight).predict(rows, output_margin=True)
    assert len(xgb_json.trees(xgb_json.from_array(resumed["model_json"]))) == (4 if mode == "histogram" else 8)
    np.testing.assert_array_equal(load_booster(resumed).predict(rows, output_margin=True), expected)


def test_squared_error_regression_equals_pooled_xgboost_too(monkeypatch):
    """reg:squarederror, 2 in-memory sites, features rounded (the pooled cuts), depth 3, 3 rounds: within 1e-5 of
    xgboost.train on the pooled rows."""
    # Prepare
    script = load_script(EXAMPLE / "app" / "train.py", monkeypatch)
    parts = {}
    for site in SITES[:2]:
        x, _ = script.site_table(site, 400, 8, 1)
        parts[site] = (x, 0.3 * x[:, 2] - x[:, 3] ** 2 + np.log1p(x[:, 0]))
    params = {"objective": "reg:squarederror", "max_depth": 3, "max_bin": 1024, "base_score": 0.0}
    rows = xgb.DMatrix(np.concatenate([x for x, _ in parts.values()]),
                       label=np.concatenate([y for _, y in parts.values()]))
    reference = xgb.train(xgb_hist.BoostParams(**params).xgboost_params(), rows, 3)  # type: ignore[arg-type]
    # Execute
    final = XGBoost(XGBoostArgs(rounds=3, params=params)).run(in_memory_sites(parts), None)  # type: ignore[arg-type]
    # Assert
    np.testing.assert_allclose(load_booster(final).predict(rows), reference.predict(rows), rtol=0, atol=1e-5)
