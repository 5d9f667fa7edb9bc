"""The scikit-learn example jobs in the simulator against plain references: logistic regression and a linear SVM
under FedAvg (the coefficients are the reference loop's: each site's SGD rounds, averaged by rows), and random
forests pooled (the forest predicts as scikit-learn's RandomForestClassifier over every site's trees)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flctl.node.frameworks.forest import pool, predict_proba
from flctl.node.jobs.job_spec import load_job
from flctl.node.simulator.runtime import simulate
from flctl.node.wire import tensors
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.forest import Forest

from .conftest import ROOT
from .test_example_jobs import load_script

ensemble = pytest.importorskip("sklearn.ensemble", reason="needs the frameworks extra: bash scripts/setup.sh --all")
JOBS = ROOT / "playbooks" / "jobs" / "sklearn"
SITES = ["site-1", "site-2", "site-3"]


def final(job_dir):
    return tensors.decode((job_dir / "models" / "final.safetensors").read_bytes())


@pytest.mark.parametrize(("job", "loss"), [("logistic.yml", "log_loss"), ("svm.yml", "hinge")])
def test_linear_models_are_fedavg_of_the_sites_sgd_coefficients(tmp_path, monkeypatch, job, loss):
    """10 rounds over 3 sites: the final coefficients are the reference loop's (each site's train_round from the
    global model, weighted by rows) to 1e-12; the model classifies the pooled rows better than chance."""
    # Prepare
    script = load_script(JOBS / "app" / "linear.py", monkeypatch)
    data = load_script(JOBS / "app" / "tabular.py", monkeypatch)
    tables = {site: data.labelled(site) for site in SITES}
    params: dict[str, np.ndarray] = {}
    for _ in range(10):
        answers = [(script.train_round(loss, params, x, y, data.site_seed(site) % 2**31)[0], len(y))
                   for site, (x, y) in tables.items()]
        total = sum(n for _, n in answers)
        params = {name: sum(p[name] * n for p, n in answers) / total for name in ("coef", "intercept")}
    # Execute
    result = simulate(load_job(JOBS / job), SITES, tmp_path / "ws", 1)
    # Assert
    assert result.status == "FINISHED", result.error
    got = final(result.job_dir)
    np.testing.assert_allclose(got["coef"], params["coef"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["intercept"], params["intercept"], rtol=0, atol=1e-12)
    x = np.concatenate([t[0] for t in tables.values()])
    y = np.concatenate([t[1] for t in tables.values()])
    assert np.mean(((x @ got["coef"].T + got["intercept"]).ravel() > 0) == (y == 1)) > 0.7


def test_the_pooled_forest_predicts_as_sklearn_over_every_sites_trees(tmp_path, monkeypatch):
    """Each site's 20 trees (the same seeds as its script), pooled in site order: the federated forest's class
    probabilities on the pooled rows are those of a RandomForestClassifier holding all 60 trees; each site's
    val_accuracy is the pooled forest's on its rows."""
    # Prepare
    script = load_script(JOBS / "app" / "forest.py", monkeypatch)
    data = load_script(JOBS / "app" / "tabular.py", monkeypatch)
    tables = {site: data.labelled(site) for site in SITES}
    forests = []
    for site, (x, y) in tables.items():
        forest = ensemble.RandomForestClassifier(n_estimators=script.TREES, max_depth=6,
                                                 random_state=data.site_seed(site) % 2**31)
        forests.append(forest.fit(x, y))
    joined = forests[0]
    joined.estimators_ = [tree for forest in forests for tree in forest.estimators_]
    joined.n_estimators = len(joined.estimators_)
    x = np.concatenate([t[0] for t in tables.values()])
    # Execute
    result = simulate(load_job(JOBS / "forest.yml"), SITES, tmp_path / "ws", 1)
    # Assert
    assert result.status == "FINISHED", result.error
    model = final(result.job_dir)
    np.testing.assert_allclose(predict_proba(model, x), joined.predict_proba(x), rtol=0, atol=1e-12)
    report = json.loads((result.job_dir / "reports" / "forest.json").read_text())
    assert report["trees"] == 60 and report["trees_per_site"] == {site: 20 for site in SITES}
    x1, y1 = tables["site-1"]
    assert report["sites"]["site-1"]["val_accuracy"] == pytest.approx(np.mean(joined.predict(x1) == y1), abs=1e-12)
    assert WORKFLOWS["forest"] is Forest


def test_forests_with_other_classes_do_not_pool():
    """Pooling refuses forests whose classes differ, naming both."""
    # Prepare
    tree = {"tree/0/left": np.array([-1]), "tree/0/right": np.array([-1]), "tree/0/feature": np.array([-2]),
            "tree/0/threshold": np.array([-2.0]), "tree/0/value": np.array([[1.0, 0.0]])}
    # Execute / Assert
    with pytest.raises(ValueError, match=r"classes \[0, 2\] differ from \[0, 1\]"):
        pool([{**tree, "classes": np.array([0, 1])}, {**tree, "classes": np.array([0, 2])}])
