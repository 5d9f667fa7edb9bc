"""Sites may answer with the full model or with what training added to it (`params_type: diff`): every workflow
takes both, the same model comes out, and a diff that cannot apply is refused with the reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.jobs.tasks import PARAMS_TYPE, SCAFFOLD_DC, Task, TaskResult
from flctl.node.workflows.aggregation import full_params
from flctl.node.workflows.cyclic import Cyclic, CyclicArgs
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs
from flctl.node.workflows.fedopt import FedOpt, FedOptArgs

from .federation import FLCTL
from .job_folders import workflow_job
from .test_fedavg import FakeFederation, Site
from .test_fedopt import TARGETS, X0, pulls
from .test_scaffold import scaffold
from .test_scaffold import three_sites as scaffold_sites
from .test_workflow_state import StatefulFederation


def as_diff(site: Site) -> Site:
    """The same site, answering with (its model - the model it was sent) and params_type diff."""

    def train(task: Task) -> TaskResult:
        full = site(task)
        assert isinstance(full, TaskResult)
        diff = {name: value - task.params[name] if name in task.params else value
                for name, value in full.params.items()}
        return TaskResult(full.site, diff, full.num_examples, full.metrics, {PARAMS_TYPE: "diff"})

    return train


def mixed() -> StatefulFederation:
    """site-1 and site-3 answer with diffs, site-2 with its full model."""
    return StatefulFederation({s: as_diff(pulls(s)) if s != "site-2" else pulls(s) for s in TARGETS})


def plain() -> StatefulFederation:
    return StatefulFederation({s: pulls(s) for s in TARGETS})


@pytest.mark.parametrize("make", [
    lambda: FedAvg(FedAvgArgs(rounds=3)),
    lambda: FedOpt(FedOptArgs(rounds=3, optimizer="adam")),
    lambda: Cyclic(CyclicArgs(rounds=3)),
])
def test_diffs_and_full_models_give_the_same_model(make):
    """FedAvg, FedOpt and cyclic end on the same model whether sites send diffs or full models."""
    # Prepare
    full, diffs = plain(), mixed()
    # Execute
    want = make().run(full, {"w": X0.copy()})
    got = make().run(diffs, {"w": X0.copy()})
    # Assert
    np.testing.assert_allclose(got["w"], want["w"], rtol=0, atol=1e-12)


def test_fedavg_reads_the_checkpoint_a_diff_applies_to_and_resumes_with_it():
    """FedAvg holds no old model: a diff in round 2 of a resumed run is added to round 1's checkpoint."""
    # Prepare
    first, rest = plain(), mixed()
    FedAvg(FedAvgArgs(rounds=2)).run(first, {"w": X0.copy()})
    rest.models["round-1"] = first.models["round-1"]
    # Execute
    resumed = FedAvg(FedAvgArgs(rounds=3)).run(rest, first.models["round-1"], start_round=2)
    whole = FedAvg(FedAvgArgs(rounds=3)).run(plain(), {"w": X0.copy()})
    # Assert
    np.testing.assert_allclose(resumed["w"], whole["w"], rtol=0, atol=1e-12)
    assert rest.tasks[0][0].saved_as == "round-1", "the resumed round's task is its checkpoint"


def test_scaffold_takes_a_diff_for_the_model_part():
    """A SCAFFOLD site may send y_i - x as a diff beside its control update: the same result."""
    # Prepare
    full, diffs = scaffold_sites(), scaffold_sites()
    site = diffs.site_fns["site-2"]

    def diff(task: Task) -> TaskResult:
        answer = site(task)
        assert isinstance(answer, TaskResult)
        params = {n: v - task.params["w"] if not n.startswith(SCAFFOLD_DC) else v for n, v in answer.params.items()}
        return TaskResult(answer.site, params, answer.num_examples, answer.metrics, {PARAMS_TYPE: "diff"})

    diffs.site_fns["site-2"] = diff
    # Execute / Assert
    np.testing.assert_allclose(scaffold(3).run(diffs, {"w": np.array([0.5, 0.5])})["w"],
                               scaffold(3).run(full, {"w": np.array([0.5, 0.5])})["w"], rtol=0, atol=1e-12)


def test_a_diff_that_cannot_apply_is_refused_with_the_reason():
    """No model yet, other tensors, another shape, or an unknown params_type: each a sentence."""
    # Prepare
    model = {"w": np.zeros(2, np.float32)}
    # Execute / Assert
    with pytest.raises(ValueError, match="there is no model yet to add it to"):
        full_params({"w": np.ones(2)}, "diff", dict)
    with pytest.raises(ValueError, match=r"its diff has the tensors \['v'\], the model has \['w'\]"):
        full_params({"v": np.ones(2)}, "diff", lambda: model)
    with pytest.raises(ValueError, match=r"its diff of tensor 'w' has shape \(3,\), the model's is \(2,\)"):
        full_params({"w": np.ones(3)}, "diff", lambda: model)
    with pytest.raises(ValueError, match="params_type 'delta' is neither 'full' nor 'diff'"):
        full_params({"w": np.ones(2)}, "delta", lambda: model)
    assert full_params({"w": np.ones(2)}, "diff", lambda: model)["w"].dtype == np.float32


def test_a_round_0_diff_with_no_model_leaves_that_site_out():
    """The first round of a job with no initial model: a site sending a diff is told to send the full model."""
    # Prepare
    fed = FakeFederation({"a": as_diff(lambda t: TaskResult("a", {"w": np.ones(2)}, 1)),
                          "b": lambda t: TaskResult("b", {"w": np.full(2, 3.0)}, 1)})
    # Execute
    final = FedAvg(FedAvgArgs(rounds=1)).run(fed, None)
    # Assert
    assert final["w"].tolist() == [3.0, 3.0]
    assert any("a failed: sent an unusable model: it sent a diff, but there is no model yet" in line
               for line in fed.lines)


DIFF_SCRIPT = """
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    if not model.params:  # round 0: no model yet, so the full one
        fl.send(fl.Model(params={"w": np.full(3, 1.0, np.float32)}, num_examples=1))
        continue
    target = np.float32(2.0 if fl.site_name() == "site-1" else 4.0)
    step = {"w": (target - model.params["w"]) * np.float32(0.5)}
    fl.send(fl.Model(params=step, params_type="diff", num_examples=1))
"""


def test_a_simulated_job_whose_script_sends_diffs(tmp_path: Path):
    """Through the Client API (`fl.Model(params_type="diff")`) and the simulator: the model a plain loop gives."""
    # Prepare
    job = workflow_job(tmp_path, "diffs", "fedavg", {"rounds": 3, "round_timeout_s": 60}, DIFF_SCRIPT)
    # Execute
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", str(tmp_path / "ws")], capture_output=True,
                         text=True, timeout=120, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    w = np.full(3, 1.0)
    for _ in range(2):
        w = np.mean([w + (t - w) * 0.5 for t in (2.0, 4.0)], axis=0)
    np.testing.assert_allclose(load_file(tmp_path / "ws" / "diffs" / "models" / "final.safetensors")["w"], w,
                               rtol=1e-6)


def test_the_client_api_refuses_another_params_type():
    """fl.Model(params_type="delta") is refused at send with the allowed values (no connection needed to see it)."""
    # Prepare
    from flctl.node.client import api

    session = api._Session.__new__(api._Session)
    session._task_lock = __import__("threading").RLock()
    session._current, session._ended, session._current_id = api.Model(), False, 1
    # Execute / Assert
    with pytest.raises(ValueError, match="params_type must be 'full' or 'diff', not 'delta'"):
        session.answer(api.Model(params_type="delta"))
