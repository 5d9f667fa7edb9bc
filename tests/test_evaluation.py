"""Evaluation tasks: `fedavg`'s `evaluate_every` sends the global model to every site as an `evaluate` task, whose
metrics come back as `val_<name>`; a script that only trains is left out with the reason, and nothing hangs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from flctl.node.jobs.tasks import Task, TaskResult
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs

from .federation import FLCTL
from .job_folders import workflow_job
from .test_fedavg import FakeFederation, Site


def evaluating(site: str, examples: int, accuracy: float) -> Site:
    """Trains (+1) on train tasks; on evaluate tasks answers metrics only: the model's first weight and `accuracy`."""

    def answer(task: Task) -> TaskResult:
        if task.kind == "evaluate":
            return TaskResult(site, {}, examples, {"w0": float(task.params["w"][0]), "accuracy": accuracy})
        return TaskResult(site, {"w": task.params["w"] + 1}, examples, {"loss": 1.0})

    return answer


def test_the_global_model_is_evaluated_every_n_rounds_and_after_the_last():
    """evaluate_every 2 of 3 rounds: after rounds 1 and 2 (the last), each site's val_ metrics join its round's."""
    # Prepare
    fed = FakeFederation({"a": evaluating("a", 1, 0.5), "b": evaluating("b", 3, 0.9)})
    # Execute
    FedAvg(FedAvgArgs(rounds=3, evaluate_every=2)).run(fed, {"w": np.zeros(2, np.float32)})
    # Assert
    kinds = [(task.kind, task.round) for task, _, _ in fed.tasks]
    assert kinds == [("train", 0), ("train", 1), ("evaluate", 1), ("train", 2), ("evaluate", 2)]
    evaluate_task = fed.tasks[2][0]
    assert evaluate_task.saved_as == "round-1" and evaluate_task.params is fed.models["round-1"]
    assert fed.rounds[0] == {"a": {"loss": 1.0}, "b": {"loss": 1.0}}
    assert fed.rounds[1]["b"] == {"loss": 1.0, "val_w0": 2.0, "val_accuracy": 0.9}
    assert "round 2 evaluation: 2 of 2 sites, val_accuracy 0.8, val_w0 2" in fed.lines


def test_a_script_that_only_trains_is_left_out_of_the_evaluation_and_the_job_goes_on():
    """A site answering an evaluate task with a model is named in the log; the training rounds are unaffected."""
    # Prepare
    def trains_only(task: Task) -> TaskResult:
        return TaskResult("b", {"w": task.params["w"] + 1}, 1, {"loss": 2.0})

    fed = FakeFederation({"a": evaluating("a", 1, 0.5), "b": trains_only})
    # Execute
    final = FedAvg(FedAvgArgs(rounds=2, evaluate_every=1)).run(fed, {"w": np.zeros(2, np.float32)})
    # Assert
    assert final["w"].tolist() == [2.0, 2.0]
    assert "round 1 evaluation: b answered with a model, not metrics: its script does not handle evaluate tasks " \
           "(ask fl.is_evaluate() and send metrics only)" in fed.lines
    assert fed.rounds[1]["b"] == {"loss": 2.0}
    assert fed.rounds[1]["a"]["val_accuracy"] == 0.5


SCRIPT = """
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    if fl.is_evaluate():
        assert not fl.is_train() and not fl.is_submit_model() and model.task == "evaluate"
        fl.send(fl.Model(metrics={"accuracy": float(model.params["w"].sum())}, num_examples=2))
        continue
    params = model.params or {"w": np.zeros(2, np.float32)}
    fl.send(fl.Model(params={"w": params["w"] + np.float32(0.5)}, metrics={"loss": 1.0}, num_examples=1))
"""


def test_a_simulated_job_evaluates_through_the_client_api(tmp_path: Path):
    """fl.is_evaluate() in a real script: val_accuracy of each evaluated round lands in metrics.json."""
    # Prepare
    job = workflow_job(tmp_path, "evaluated", "fedavg", {"rounds": 2, "evaluate_every": 1, "round_timeout_s": 60},
                       SCRIPT)
    # Execute
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", str(tmp_path / "ws")], capture_output=True,
                         text=True, timeout=120, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    metrics = json.loads((tmp_path / "ws" / "evaluated" / "metrics.json").read_text())
    val = sorted((m["round"], m["site"], m["value"]) for m in metrics if m["name"] == "val_accuracy")
    assert val == [(0, "site-1", 1.0), (0, "site-2", 1.0), (1, "site-1", 2.0), (1, "site-2", 2.0)]


def test_hello_numpy_which_only_trains_still_finishes_with_evaluation_on(tmp_path: Path):
    """An unchanged train-only script under evaluate_every: the job FINISHES and the log says why nothing was
    evaluated."""
    # Prepare
    source = (Path(__file__).resolve().parent.parent / "playbooks/jobs/hello-numpy/app/train.py").read_text()
    job = workflow_job(tmp_path, "trains-only", "fedavg", {"rounds": 2, "evaluate_every": 1, "round_timeout_s": 60},
                       source)
    # Execute
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", str(tmp_path / "ws")], capture_output=True,
                         text=True, timeout=120, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    log = (tmp_path / "ws" / "trains-only" / "logs" / "server.log").read_text()
    assert "round 2 evaluation: site-1 answered with a model, not metrics" in log
