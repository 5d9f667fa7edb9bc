"""PyTorch Lightning under flctl: `patch(trainer)` (flctl's `flctl.client.lightning` and NVIDIA FLARE's
`nvflare.client.lightning`) loads the global model before validate and fit, answers a train task with the trained
model and `trainer.callback_metrics` when fit ends and an evaluate task with validate's metrics; the example job
`playbooks/jobs/hello-lightning` runs in the simulator."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flctl.node.client.script_bridge import ScriptBridge
from flctl.node.jobs.tasks import Task, TaskKind

from .conftest import ROOT
from .federation import FLCTL

pytest.importorskip("pytorch_lightning", reason="needs pytorch-lightning (bash scripts/setup.sh --all)")
EXAMPLE = ROOT / "playbooks" / "jobs" / "hello-lightning"

NVFLARE_LIGHTNING = """
import pytorch_lightning as pl
import nvflare.client.lightning as flare
from model import make_data, make_model

train, val = make_data("site-a")
model = make_model()
trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
flare.patch(trainer)
while flare.is_running():
    input_model = flare.receive()
    print("round", input_model.current_round, flare.get_task_name(), "first", float(model.net[0].bias[0]))
    trainer.validate(model, val, verbose=False)
    print("loaded", float(model.net[0].bias[0]))
    trainer.fit(model, train, val)  # after an evaluate task (answered by validate), fit takes the next task
"""


def _global_model() -> dict[str, np.ndarray]:
    """The example's initial model with every bias set to 0.25 (so that loading it shows)."""
    sys.path.insert(0, str(EXAMPLE / "app"))
    try:
        from model import make_model  # the example's own module
    finally:
        sys.path.remove(str(EXAMPLE / "app"))
        sys.modules.pop("model", None)
    state = {k: v.detach().numpy().copy() for k, v in make_model().state_dict().items()}
    for name, value in state.items():
        if name.endswith("bias"):
            value[:] = 0.25
    return state


def test_nvflare_lightning_patch_loads_the_global_model_and_answers_train_and_evaluate(tmp_path: Path) -> None:
    """Train round 0, evaluate, train round 1: the global model is loaded before validate; fit's end answers with
    the state_dict, the validation metrics and the steps trained (as many in round 1 as in round 0: the fit loop
    is extended); validate answers the evaluate task with metrics only."""
    # Prepare
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE / "app", app)
    (app / "client.py").write_text(NVFLARE_LIGHTNING)
    output: list[str] = []
    bridge = ScriptBridge(workdir=app, command=["python", "client.py"], env={}, site="site-a", job_id="job-l",
                          on_output=output.append, on_metric=lambda *_: None, compat="nvflare")
    given = _global_model()
    bridge.start()
    try:
        # Execute
        first = bridge.run_task(Task(TaskKind.TRAIN, 0, given, {"rounds": 2}), timeout_s=120)
        evaluated = bridge.run_task(Task(TaskKind.EVALUATE, 0, first.params, {"evaluate": True}), timeout_s=120)
        second = bridge.run_task(Task(TaskKind.TRAIN, 1, first.params, {"rounds": 2}), timeout_s=120)
        code = bridge.finish()
    finally:
        bridge.kill()
    # Assert
    assert code == 0, output
    assert "loaded 0.25" in output, output
    assert set(first.params) == set(given) and not np.array_equal(first.params["net.0.bias"], given["net.0.bias"])
    assert set(first.metrics) >= {"loss", "accuracy"}
    assert set(first.meta["initial_metrics"]) >= {"loss", "accuracy"}
    assert first.meta["model"] == "Classifier"  # the module's __fl_meta__
    assert first.num_examples == second.num_examples == 12  # 2 epochs x 6 batches, each round
    assert evaluated.params == {} and set(evaluated.metrics) >= {"loss", "accuracy"}
    assert any(line.startswith("round 0 validate") for line in output)


def test_the_hello_lightning_example_runs_in_the_simulator(tmp_path: Path) -> None:
    """flctl's own patch: three FedAvg rounds and the final evaluation finish; the final model loads back into the
    LightningModule."""
    import flctl.client as fl

    # Execute
    out = subprocess.run([FLCTL, "simulate", str(EXAMPLE), "-n", "2", "-w", str(tmp_path / "ws")],
                         capture_output=True, text=True, timeout=300, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    result = tmp_path / "ws" / "hello-lightning"
    names = {row["name"] for row in json.loads((result / "metrics.json").read_text())}
    assert {"loss", "accuracy", "val_accuracy", "val_loss"} <= names
    sys.path.insert(0, str(EXAMPLE / "app"))
    try:
        from model import make_model
    finally:
        sys.path.remove(str(EXAMPLE / "app"))
        sys.modules.pop("model", None)
    fl.load_model(result / "models" / "final.safetensors", into=make_model())
