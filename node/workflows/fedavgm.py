"""FedAvg with server momentum (Hsu et al. 2019, "Measuring the effects of non-identical data distribution";
Flower's `FedAvgM`): the server treats the change the sites' average makes as a gradient and takes a
momentum step along it, which steadies training when the sites' data differ.

With `x` the global model sent, `a` the sites' weighted average and `v` the momentum (none before the
first step):

    g = x - a
    v = g                      on the first step
    v = server_momentum * v + g after it
    x' = x - server_learning_rate * v

With `server_momentum` 0 and `server_learning_rate` 1 this is FedAvg. With no initial model, round 0's
average becomes the first global model (nothing to step from). `v` is the workflow's state: it is saved
with every round's checkpoint and restored when the server resumes the job after a restart.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from flctl.node.jobs.tasks import Params
from flctl.node.workflows.base import WorkflowArgs, WorkflowError
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs
from flctl.node.workflows.state import WorkflowState


class FedAvgMArgs(FedAvgArgs):
    """`workflow.args` of a `fedavgm` job (those of `fedavg`, and two more)."""

    server_learning_rate: float = Field(1.0, gt=0, description="The step the server takes along the momentum")
    server_momentum: float = Field(0.0, ge=0, lt=1, description="How much of the last momentum each step keeps")


class FedAvgM(FedAvg):
    """FedAvg whose server takes a momentum step from the global model towards the sites' average."""

    type_name: ClassVar[str] = "fedavgm"
    Args: ClassVar[type[WorkflowArgs]] = FedAvgMArgs
    keeps_previous_model: ClassVar[bool] = True

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        if not isinstance(args, FedAvgMArgs):
            raise TypeError(f"FedAvgM needs FedAvgMArgs, not {type(args).__name__}")
        super().__init__(args, min_sites)
        self.momentum_args = args
        self.velocity: Params = {}
        self.steps = 0

    def server_step(self, previous: Params, average: Params) -> Params:
        """x' = x - lr * v, with v = momentum * v + (x - a) (v = x - a on the first step)."""
        from flctl.node.workflows.aggregation import momentum_step  # numpy: only when a job runs

        model, self.velocity = momentum_step(previous, average, self.velocity if self.steps else None,
                                             self.momentum_args.server_learning_rate,
                                             self.momentum_args.server_momentum)
        self.steps += 1
        return model

    def state(self) -> WorkflowState:
        return WorkflowState({"steps": self.steps}, dict(self.velocity))

    def restore(self, state: WorkflowState) -> None:
        steps = state.values.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0 or (steps and not state.arrays):
            raise WorkflowError(f"the saved fedavgm state is damaged (steps {steps!r}, "
                                f"{len(state.arrays)} momentum arrays)")
        self.steps, self.velocity = steps, dict(state.arrays)
