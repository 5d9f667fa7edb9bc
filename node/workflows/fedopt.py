"""FedOpt (Reddi et al. 2021): FedAvg whose server takes an optimizer step (sgdm, adam, yogi or adagrad) along the
change the sites' weighted average makes to the global model. The maths is in `server_optimizers`; the moments
are the workflow's state, saved with every round's checkpoint and restored when the server resumes the job.

With no initial model, round 0's average becomes the first global model (there is nothing to step from).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from flctl.node.jobs.tasks import Params
from flctl.node.workflows.base import WorkflowArgs, WorkflowError
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs
from flctl.node.workflows.server_optimizers import Hyper, Moments, Optimizer, step
from flctl.node.workflows.state import WorkflowState

DEFAULT_LR: dict[str, float] = {"sgdm": 1.0, "adam": 0.1, "yogi": 0.01, "adagrad": 0.1}
"""Each optimizer's default server learning rate (Flower's `eta`; 1.0 for sgdm, which is then FedAvgM)."""


class FedOptArgs(FedAvgArgs):
    """`workflow.args` of a `fedopt` job (those of `fedavg`, and the server optimizer's)."""

    optimizer: Optimizer = Field("adam", description="The server's optimizer: sgdm, adam, yogi or adagrad")
    server_lr: float | None = Field(None, gt=0, description="The server's learning rate (default: 1.0 for sgdm, "
                                                            "0.1 for adam and adagrad, 0.01 for yogi)")
    beta1: float = Field(0.9, ge=0, lt=1, description="adam, yogi, adagrad: decay of the first moment")
    beta2: float = Field(0.99, ge=0, lt=1, description="adam, yogi: decay of the second moment")
    tau: float = Field(1e-3, gt=0, description="adam, yogi, adagrad: adaptivity (added to the root of v)")
    momentum: float = Field(0.0, ge=0, lt=1, description="sgdm: how much of the last step each step keeps")

    secure_modes: ClassVar[frozenset[str]] = frozenset(("masking",))  # its server step needs the plain average


class FedOpt(FedAvg):
    """FedAvg whose server optimizer steps from the global model towards the sites' average."""

    type_name: ClassVar[str] = "fedopt"
    Args: ClassVar[type[WorkflowArgs]] = FedOptArgs
    keeps_previous_model: ClassVar[bool] = True

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.hyper = self.hyper_of(args)
        self.moments = Moments()
        self.steps = 0

    @classmethod
    def hyper_of(cls, args: WorkflowArgs) -> Hyper:
        """The optimizer's settings from the job's arguments."""
        if not isinstance(args, FedOptArgs):
            raise TypeError(f"{cls.__name__} needs FedOptArgs, not {type(args).__name__}")
        lr = args.server_lr if args.server_lr is not None else DEFAULT_LR[args.optimizer]
        return Hyper(args.optimizer, lr, args.beta1, args.beta2, args.tau, args.momentum)

    def server_step(self, previous: Params, average: Params) -> Params:
        if not previous:  # no model yet: the first average becomes it
            return average
        model = step(self.hyper, previous, average, self.moments)
        self.steps += 1
        return model

    def state(self) -> WorkflowState:
        arrays = {f"m/{name}": array for name, array in self.moments.m.items()}
        arrays.update({f"v/{name}": array for name, array in self.moments.v.items()})
        return WorkflowState({"steps": self.steps, "optimizer": self.hyper.optimizer}, arrays)

    def restore(self, state: WorkflowState) -> None:
        steps = state.values.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0 or (steps and not state.arrays) \
                or state.values.get("optimizer") != self.hyper.optimizer:
            raise WorkflowError(f"the saved {self.type_name} state is damaged or for another optimizer "
                                f"(steps {steps!r}, optimizer {state.values.get('optimizer')!r}, "
                                f"{len(state.arrays)} moment arrays)")
        moments = Moments()
        for key, array in state.arrays.items():
            kind, _, name = key.partition("/")
            if kind not in ("m", "v") or not name:
                raise WorkflowError(f"the saved {self.type_name} state holds {key!r}, which is not a moment")
            (moments.m if kind == "m" else moments.v)[name] = array
        self.steps, self.moments = steps, moments

