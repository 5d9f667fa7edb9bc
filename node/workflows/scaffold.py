"""SCAFFOLD (Karimireddy et al. 2020, "Stochastic Controlled Averaging for Federated Learning", option II control
variates): the server's control variate `c` travels with the model, each site keeps its own `c_i` and corrects
every local gradient step by `c - c_i`, which removes the drift of sites whose data differ.

Each round, with x the global model and S the sites that answered out of N in the round:

    a site trains K steps of size lr from x, each gradient g corrected to g + c - c_i, ending at y_i;
    c_i+ = c_i - c + (x - y_i) / (K * lr);  it answers y_i and dc_i = c_i+ - c_i   (fl.scaffold_params)
    x  = x + server_lr * mean_S(y_i - x)
    c  = c + |S| / N * mean_S(dc_i)

Means are plain, as in the paper (not weighted by examples). On the wire `c` travels beside the model as the
tensors `@scaffold_c/<name>` and `dc_i` comes back as `@scaffold_dc/<name>`; the Client API takes the first out
of what the script receives and puts the second in with `fl.scaffold_params`. `c` (one array per floating
tensor of the model) is the workflow's state, saved with each round's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from pydantic import Field

from flctl.node.jobs.tasks import PARAMS_TYPE, Params, TaskResult
from flctl.node.jobs.tasks import SCAFFOLD_C as C_PREFIX
from flctl.node.jobs.tasks import SCAFFOLD_DC as DC_PREFIX
from flctl.node.wire.tensors import is_float
from flctl.node.workflows.base import WorkflowArgs, WorkflowError
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs
from flctl.node.workflows.state import WorkflowState

if TYPE_CHECKING:
    from flctl.node.workflows.aggregation import WeightedSum
    from flctl.node.workflows.secure_sum import SecureSum


class ScaffoldArgs(FedAvgArgs):
    """`workflow.args` of a `scaffold` job (those of `fedavg`, and the server's learning rate)."""

    server_lr: float = Field(1.0, gt=0, description="The step the server takes along the sites' mean change")

    secure_modes: ClassVar[frozenset[str]] = frozenset()  # its control variates are summed in clear


class Scaffold(FedAvg):
    """FedAvg with control variates: the model and `c` go out, each site's model and `dc_i` come back."""

    type_name: ClassVar[str] = "scaffold"
    Args: ClassVar[type[WorkflowArgs]] = ScaffoldArgs
    keeps_previous_model: ClassVar[bool] = True

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.server_lr = cast(ScaffoldArgs, args).server_lr  # checked by Workflow.__init__
        self.control: Params = {}  # c: name -> array, for the model's floating tensors
        self._deltas: WeightedSum | None = None
        self._sites = 0

    def begin_round(self, round_no: int, sites: list[str]) -> None:
        from flctl.node.workflows.aggregation import WeightedSum

        self._deltas = WeightedSum(like=self.control or None, like_name="the control variate")
        self._sites = len(sites)

    def task_params(self, model: Params) -> Params:
        """The model and `c` (zeros before the first update) for its floating tensors."""
        import numpy as np

        if not model:
            return model
        control = {name: self.control.get(name, np.zeros(np.shape(value), np.asarray(value).dtype))
                   for name, value in model.items() if is_float(np.asarray(value).dtype)}
        return {**model, **{C_PREFIX + name: value for name, value in control.items()}}

    def add_answer(self, total: WeightedSum | SecureSum, answer: TaskResult, base: Callable[[], Params]) -> None:
        """y_i (or x plus its diff) into the model's sum and dc_i into the control's, each counted once (plain
        means); neither changes unless both fit."""
        from flctl.node.workflows.aggregation import WeightedSum, full_params

        assert self._deltas is not None and isinstance(total, WeightedSum)  # ScaffoldArgs allow no secure mode
        model = full_params({name: value for name, value in answer.params.items() if not name.startswith(DC_PREFIX)},
                            answer.meta.get(PARAMS_TYPE, "full"), base)
        deltas = {name[len(DC_PREFIX):]: value for name, value in answer.params.items() if name.startswith(DC_PREFIX)}
        if not deltas:
            raise ValueError(f"it sent no control-variate update ({DC_PREFIX}*): its script must answer with "
                             "fl.scaffold_params(net, steps, lr)")
        total.check(model, answer.site)
        self._deltas.check(deltas, answer.site)
        total.add(model, 1.0, site=answer.site)
        self._deltas.add(deltas, 1.0, site=answer.site)

    def server_step(self, previous: Params, average: Params) -> Params:
        """x + server_lr * (mean y - x) (mean y itself before the first model); c + |S|/N * mean dc."""
        import numpy as np

        assert self._deltas is not None
        share = self._deltas.count / self._sites
        mean_delta = self._deltas.result()
        self.control = {name: (self.control[name] + share * delta if name in self.control else share * delta)
                        .astype(delta.dtype, copy=False) for name, delta in mean_delta.items()}
        if not previous:
            return average
        out: Params = {}
        for name, sent in previous.items():
            x = np.asarray(sent)
            moved = x.astype(np.float64) + self.server_lr * (average[name].astype(np.float64) - x)
            out[name] = (np.rint(moved) if x.dtype.kind in "biu" else moved).astype(x.dtype)
        return out

    def state(self) -> WorkflowState:
        return WorkflowState({"control_tensors": len(self.control)}, dict(self.control))

    def restore(self, state: WorkflowState) -> None:
        if state.values.get("control_tensors") != len(state.arrays):
            raise WorkflowError(f"the saved scaffold state is damaged ({len(state.arrays)} control tensors, "
                                f"{state.values.get('control_tensors')!r} recorded)")
        self.control = dict(state.arrays)
