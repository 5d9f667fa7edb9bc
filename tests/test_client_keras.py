"""Keras 3 in a job (app.framework: keras): a model's weights by name in and out of the Client API, and the example
job playbooks/jobs/hello-keras, whose final model in the simulator equals a plain numpy FedAvg over the same Keras
training run in this test."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from .conftest import ROOT
from .federation import FLCTL

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="needs the keras extra: bash scripts/setup.sh --all")

JOB = ROOT / "playbooks" / "jobs" / "hello-keras"


def _model(*, hidden: str = "hidden") -> ModuleType:
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name=hidden),
                             keras.layers.BatchNormalization(name="norm"), keras.layers.Dense(1, name="out")])


def test_weights_are_named_by_layer_and_weight_and_load_back_as_set_weights_would() -> None:
    """Every weight (BatchNormalization's moving statistics too), in model.weights order, under
    `<layer>/<weight>`; load() into a fresh model gives get_weights() equal to the first's, exactly."""
    from flctl.client import keras as flk

    # Prepare
    first, second = _model(), _model()
    # Execute
    params = flk.weights(first)
    flk.load(second, params)
    # Assert
    assert list(params) == ["hidden/kernel", "hidden/bias", "norm/gamma", "norm/beta", "norm/moving_mean",
                            "norm/moving_variance", "out/kernel", "out/bias"]
    assert all(isinstance(v, np.ndarray) for v in params.values())
    for got, want in zip(second.get_weights(), first.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_load_refuses_params_that_do_not_match_the_model_naming_them() -> None:
    """A missing and an unknown name, or a wrong shape: ValueError naming them, and no weight changed."""
    from flctl.client import keras as flk

    # Prepare
    model = _model()
    before = model.get_weights()
    params = flk.weights(_model(hidden="first"))
    wrong_shape = {**flk.weights(model), "out/bias": np.zeros(2, "float32")}
    # Execute / Assert
    with pytest.raises(ValueError, match=r"missing hidden/kernel, hidden/bias; not in the model: first/kernel"):
        flk.load(model, params)
    with pytest.raises(ValueError, match=r"'out/bias' has shape \(2,\), the Keras model's weight \(1,\)"):
        flk.load(model, wrong_shape)
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_job_yml_takes_framework_keras() -> None:
    """hello-keras's job.yml says framework keras (FLCTL_FRAMEWORK for its script) and the torch backend."""
    from flctl.node.jobs.job_spec import load_job

    # Execute
    spec = load_job(JOB).spec
    # Assert
    assert spec.app.params_framework() == "keras"
    assert spec.app.env == {"KERAS_BACKEND": "torch"}


def _train_py() -> ModuleType:
    sys.path.insert(0, str(JOB / "app"))
    try:
        spec = importlib.util.spec_from_file_location("hello_keras_train", JOB / "app" / "train.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(JOB / "app"))


def _reference(rounds: int, sites: list[str]) -> dict[str, np.ndarray]:
    """FedAvg by hand: each round every site loads the global weights, trains as train.py does, and the new global
    model is the mean of their weights weighted by their examples (equal here)."""
    from flctl.client import keras as flk

    train = _train_py()
    global_params: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        answers = []
        for site in sites:
            model = train.new_model()
            x, y, _tx, _ty = train.make_data(site)
            if global_params:
                flk.load(model, global_params)
            model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
            answers.append((flk.weights(model), len(x)))
        total = sum(n for _, n in answers)
        global_params = {name: sum(p[name].astype(np.float64) * n for p, n in answers) / total
                         for name in answers[0][0]}
    return global_params


def test_hello_keras_in_the_simulator_equals_fedavg_by_hand(tmp_path: Path) -> None:
    """`flctl simulate playbooks/jobs/hello-keras -n 2` FINISHES; its final model has the Keras names, loads
    into the model with fl.load_model(into=...), equals the reference's within float32 rounding, and the global
    model's accuracy at the sites rises above 0.85."""
    import json

    import flctl.client as fl

    # Execute
    out = subprocess.run([FLCTL, "simulate", str(JOB), "-n", "2", "-w", str(tmp_path / "ws")], capture_output=True,
                         text=True, timeout=300, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    result = tmp_path / "ws" / "hello-keras"
    model = _train_py().new_model()
    final = fl.load_model(result / "models" / "final.safetensors", into=model)
    assert sorted(final) == ["hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]
    reference = _reference(3, ["site-1", "site-2"])
    for name, value in reference.items():
        np.testing.assert_allclose(final[name], value, rtol=1e-4, atol=1e-5)
    rows = json.loads((result / "metrics.json").read_text())
    last = [r["value"] for r in rows if r["name"] == "accuracy" and r.get("round") == 2]
    assert len(last) == 2 and min(last) > 0.85, rows
