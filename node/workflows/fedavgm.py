"""FedAvg with server momentum (Hsu et al. 2019, "Measuring the effects of non-identical data distribution";
Flower's `FedAvgM`, with its argument names and defaults): FedOpt's `sgdm` optimizer. With `x` the global
model sent, `a` the sites' weighted average and `m` the momentum:

    m = server_momentum * m + (a - x)      (m = a - x on the first step)
    x' = x + server_learning_rate * m

With `server_momentum` 0 and `server_learning_rate` 1 this is FedAvg. `m` is the workflow's state, saved with
every round's checkpoint and restored when the server resumes the job after a restart.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from flctl.node.workflows.base import WorkflowArgs
from flctl.node.workflows.fedavg import FedAvgArgs
from flctl.node.workflows.fedopt import FedOpt
from flctl.node.workflows.server_optimizers import Hyper


class FedAvgMArgs(FedAvgArgs):
    """`workflow.args` of a `fedavgm` job (those of `fedavg`, and two more)."""

    server_learning_rate: float = Field(1.0, gt=0, description="The step the server takes along the momentum")
    server_momentum: float = Field(0.0, ge=0, lt=1, description="How much of the last momentum each step keeps")

    secure_modes: ClassVar[frozenset[str]] = frozenset(("masking",))  # its server step needs the plain average


class FedAvgM(FedOpt):
    """FedAvg whose server takes a momentum step from the global model towards the sites' average."""

    type_name: ClassVar[str] = "fedavgm"
    Args: ClassVar[type[WorkflowArgs]] = FedAvgMArgs

    @classmethod
    def hyper_of(cls, args: WorkflowArgs) -> Hyper:
        if not isinstance(args, FedAvgMArgs):
            raise TypeError(f"FedAvgM needs FedAvgMArgs, not {type(args).__name__}")
        return Hyper("sgdm", args.server_learning_rate, momentum=args.server_momentum)
