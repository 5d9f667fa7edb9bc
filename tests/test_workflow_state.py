"""A workflow's own state saved with each round's checkpoint and restored on resume; FedAvgM, the first stateful
workflow, exact against a plain numpy reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flctl.node.jobs.tasks import Params
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.fedavgm import FedAvgM, FedAvgMArgs
from flctl.node.workflows.state import WorkflowState, read_state, state_path, write_state

from .test_fedavg import FakeFederation, adds, fedavg


class StatefulFederation(FakeFederation):
    """FakeFederation that also keeps the states saved, and the order of every save."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.states: dict[str, WorkflowState] = {}
        self.saves: list[str] = []

    def save_state(self, name: str, state: WorkflowState) -> None:
        self.states[name] = state
        self.saves.append(f"state {name}")

    def save_model(self, name: str, params: Params, saved_as: str = "") -> None:
        super().save_model(name, params, saved_as)
        self.saves.append(f"model {name}")


def two_sites() -> StatefulFederation:
    return StatefulFederation({"site-1": adds("site-1", 1.0, 10), "site-2": adds("site-2", 5.0, 30)})


def fedavgm(rounds: int, lr: float = 0.5, momentum: float = 0.9) -> FedAvgM:
    return FedAvgM(FedAvgMArgs(rounds=rounds, server_learning_rate=lr, server_momentum=momentum))


def reference(x: np.ndarray, rounds: int, lr: float, momentum: float) -> list[np.ndarray]:
    """FedAvgM's models round by round, written out plainly for the two sites of `two_sites` (their weighted
    average is the sent model plus (1*10 + 5*30) / 40 = 4)."""
    models, v = [], None
    for _ in range(rounds):
        average = x + 4.0
        g = x - average
        v = g if v is None else momentum * v + g
        x = x - lr * v
        models.append(x)
    return models


def test_registered_as_fedavgm_with_flowers_argument_names():
    """job.yml's `type: fedavgm` finds FedAvgM; its arguments are Flower's names with Flower's defaults."""
    # Prepare / Execute
    args = WORKFLOWS["fedavgm"].parse_args({"rounds": 2})
    # Assert
    assert WORKFLOWS["fedavgm"] is FedAvgM
    assert args == FedAvgMArgs(rounds=2, server_learning_rate=1.0, server_momentum=0.0)
    with pytest.raises(ValueError, match="server_momentum"):
        FedAvgM.parse_args({"rounds": 2, "server_momentum": 1.0})


def test_fedavgm_is_exact_against_the_reference_over_four_rounds():
    """Every round's global model is the momentum step from the sites' weighted average."""
    # Prepare
    fed = two_sites()
    x0 = np.zeros(2, np.float32)
    # Execute
    final = fedavgm(rounds=4).run(fed, {"w": x0})
    # Assert
    want = reference(x0.astype(np.float64), 4, 0.5, 0.9)
    for n, model in enumerate(want):
        np.testing.assert_allclose(fed.models[f"round-{n}"]["w"], model, rtol=1e-6)
    np.testing.assert_allclose(final["w"], want[-1], rtol=1e-6)
    assert want[-1].tolist() != (x0 + 16).tolist(), "the momentum changes the result (FedAvg would give 16)"


def test_fedavgm_with_no_momentum_and_rate_one_is_fedavg():
    """server_momentum 0 and server_learning_rate 1 give FedAvg's models exactly."""
    # Prepare
    start = {"w": np.array([1.5, -2.0], np.float32)}
    plain, stepped = two_sites(), two_sites()
    # Execute
    fedavg(rounds=3).run(plain, dict(start))
    fedavgm(rounds=3, lr=1.0, momentum=0.0).run(stepped, dict(start))
    # Assert
    for name in ("round-0", "round-1", "round-2", "final"):
        np.testing.assert_array_equal(stepped.models[name]["w"], plain.models[name]["w"])


def test_with_no_initial_model_round_0s_average_is_the_first_model():
    """No model to step from in round 0: its average is taken as it is, the momentum starts in round 1."""
    # Prepare
    fed = two_sites()
    # Execute
    fedavgm(rounds=2).run(fed, None)
    # Assert: round 0 averages (0+1)*10 and (0+5)*30 from zeros: 4; round 1 steps from there
    assert fed.models["round-0"]["w"].tolist() == [4.0, 4.0]
    assert fed.states["round-0"].values == {"steps": 0, "optimizer": "sgdm"}
    np.testing.assert_allclose(fed.models["round-1"]["w"], reference(np.full(2, 4.0), 1, 0.5, 0.9)[0])


def test_the_state_is_saved_before_each_rounds_model():
    """state round-N, then model round-N: a round whose model was saved always has its state."""
    # Prepare
    fed = two_sites()
    # Execute
    fedavgm(rounds=2).run(fed, {"w": np.zeros(2, np.float32)})
    # Assert
    assert fed.saves == ["state round-0", "model round-0", "state round-1", "model round-1", "model final"]
    assert fed.states["round-1"].values == {"steps": 2, "optimizer": "sgdm"}
    np.testing.assert_allclose(fed.states["round-1"].arrays["m/w"], [7.6, 7.6], rtol=1e-6)


def test_a_resumed_run_with_its_state_restored_ends_as_an_uninterrupted_one():
    """Stopped after round 1 and resumed with round 1's model and state, rounds 2-4 give the same final model;
    resumed without the state, they would not."""
    # Prepare
    x0 = {"w": np.zeros(2, np.float32)}
    whole, first, rest, forgetful = two_sites(), two_sites(), two_sites(), two_sites()
    fedavgm(rounds=5).run(whole, dict(x0))
    fedavgm(rounds=2).run(first, dict(x0))
    resumed = fedavgm(rounds=5)
    # Execute
    resumed.restore(first.states["round-1"])
    final = resumed.run(rest, first.models["round-1"], start_round=2)
    without_state = fedavgm(rounds=5).run(forgetful, first.models["round-1"], start_round=2)
    # Assert
    np.testing.assert_array_equal(final["w"], whole.models["final"]["w"])
    assert not np.allclose(without_state["w"], whole.models["final"]["w"])


def test_a_stateless_workflow_refuses_a_saved_state():
    """Handing FedAvg a state is a bug worth a clear failure, not something to ignore."""
    # Prepare / Execute / Assert
    with pytest.raises(WorkflowError, match="fedavg workflow keeps no state"):
        fedavg(rounds=1).restore(WorkflowState({"steps": 1}))


def test_a_damaged_fedavgm_state_is_refused():
    """Steps that are not a count, or steps without momentum arrays, fail the job with the state named."""
    # Prepare / Execute / Assert
    for bad in (WorkflowState({"steps": "2", "optimizer": "sgdm"}, {"m/w": np.zeros(2)}),
                WorkflowState({"steps": 3, "optimizer": "sgdm"}, {}),
                WorkflowState({"steps": 1, "optimizer": "adam"}, {"m/w": np.zeros(2)})):
        with pytest.raises(WorkflowError, match="saved fedavgm state is damaged or for another optimizer"):
            fedavgm(rounds=3).restore(bad)
    with pytest.raises(WorkflowError, match="holds 'w', which is not a moment"):
        fedavgm(rounds=3).restore(WorkflowState({"steps": 1, "optimizer": "sgdm"}, {"w": np.zeros(2)}))


def test_a_state_file_round_trips_values_and_arrays(tmp_path: Path):
    """JSON values and arrays of several dtypes come back equal from state/round-N.safetensors."""
    # Prepare
    state = WorkflowState({"steps": 3, "order": ["site-2", "site-1"], "lr": 0.25},
                          {"m": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([1, -2], np.int64)})
    path = state_path(tmp_path, "round-3")
    # Execute
    write_state(path, state)
    back = read_state(path)
    # Assert
    assert path == tmp_path / "state" / "round-3.safetensors"
    assert back.values == state.values
    assert set(back.arrays) == {"m", "n"}
    for name, array in state.arrays.items():
        np.testing.assert_array_equal(back.arrays[name], array)
        assert back.arrays[name].dtype == array.dtype
    assert not list(path.parent.glob(".*")), "no temporary file is left"


def test_state_values_that_are_not_json_are_refused_and_nothing_is_written(tmp_path: Path):
    """A workflow bug (a numpy number, NaN) is a clear ValueError, not a half-written file."""
    # Prepare
    path = state_path(tmp_path, "round-0")
    # Execute / Assert
    for values in ({"x": np.float32(1.0)}, {"x": float("nan")}):
        with pytest.raises(ValueError, match="state values are not JSON"):
            write_state(path, WorkflowState(values))
    assert not path.exists()


def test_a_file_that_is_not_a_state_is_refused_with_its_name(tmp_path: Path):
    """A model file, or garbage, read as a state names the file and what is wrong."""
    # Prepare
    from flctl.node.wire import tensors

    model = tmp_path / "round-0.safetensors"
    tensors.write_file(model, {"w": np.zeros(2, np.float32)})
    garbage = tmp_path / "round-1.safetensors"
    garbage.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    # Execute / Assert
    with pytest.raises(ValueError, match=r"round-0.safetensors cannot be read: no flctl.workflow_state"):
        read_state(model)
    with pytest.raises(ValueError, match=r"round-1.safetensors cannot be read"):
        read_state(garbage)


def test_task_kinds_are_parsed_and_an_unknown_one_is_a_clear_task_error():
    """train, evaluate and submit_model are kinds; a newer server's kind fails the task, saying to upgrade."""
    # Prepare
    from flctl.node.errors import TaskError
    from flctl.node.jobs.tasks import TaskKind

    # Execute / Assert
    assert [TaskKind.parse(v) for v in ("train", "evaluate", "submit_model", "aggregate")] == list(TaskKind)[:4]
    assert [TaskKind.parse(kind.value) for kind in TaskKind] == list(TaskKind)
    with pytest.raises(TaskError, match="task of kind 'swarm_step', which this site's flctl does not know "
                                        r"\(it knows train, evaluate, submit_model, aggregate, .*\); upgrade flctl "
                                        "at this site"):
        TaskKind.parse("swarm_step")
