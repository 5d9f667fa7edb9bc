"""The small interface every workflow is written against.

The gRPC runtime (a server job process) and the in-process simulator both implement
`Federation`, so one workflow runs unchanged in simulation, on one machine and in production.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskResult
from flctl.node.workflows.state import WorkflowState


class WorkflowError(Exception):
    """The workflow cannot go on (too few sites answered, a round timed out…); the job FAILS with this message."""


class WorkflowArgs(BaseModel):
    """Base for a workflow's arguments (from job.yml `workflow.args`); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Federation(Protocol):
    """What a workflow may do with the federation."""

    job_id: str

    def sites(self) -> list[str]:
        """Sites taking part in this job."""
        ...

    def send(self, task: Task, sites: Sequence[str], timeout_s: float) -> Iterator[TaskResult | SiteFailure]:
        """Send `task` to `sites`; yield each answer (or failure) as it arrives, until every site answered
        or `timeout_s` passed (then the iterator simply ends)."""
        ...

    def save_model(self, name: str, params: Params, saved_as: str = "") -> None:
        """Store a model artifact: `round-<n>` after each round (the checkpoint), `final` at the end. With
        `saved_as`, `params` are the model already saved under that name, unchanged: it may be reused."""
        ...

    def load_model(self, name: str) -> Params:
        """The model saved under `name` (read as it is used: a big model is not read into memory at once)."""
        ...

    def job_file(self, path: str) -> bytes:
        """A file of the job's folder as it was submitted (`path` relative to it: a model to start from…);
        OSError when the job has no such file, ValueError when `path` leaves the folder."""
        ...

    def kit_file(self, name: str) -> bytes:
        """A file of the server kit's `startup/` (the HE public context, `server_context.tenseal`); OSError when the
        kit has no such file (in a simulation: what the simulator stands in for it with)."""
        ...

    def save_report(self, name: str, report: dict[str, Any]) -> None:
        """Keep a report the workflow made (JSON: a cross-site evaluation's matrix…) as `reports/NAME.json`,
        shown by `flctl job show` and downloaded with the job."""
        ...

    def save_state(self, name: str, state: WorkflowState) -> None:
        """Store the workflow's own state under `name` (`round-<n>`), just before the model of that round: a
        restart that resumes from round n's model gives the workflow this state back (`Workflow.restore`)."""
        ...

    def record_round(self, round_no: int, metrics: dict[str, dict[str, float]]) -> None:
        """A round is complete; `metrics` maps site -> metric name -> value."""
        ...

    def log(self, message: str) -> None:
        """A line in the job's server log."""
        ...


class AsyncFederation(Federation, Protocol):
    """A federation whose tasks may be open at once, each at its own site, answered in any order (FedBuff's
    sites training at their own pace). `send` may still be used meanwhile: an answer to a posted task that
    arrives while `send` waits is kept for `next_answer`."""

    def post(self, task: Task, site: str, timeout_s: float) -> str:
        """Send `task` to `site` and return at once with the task's id; its answer comes from `next_answer`."""
        ...

    def next_answer(self, timeout_s: float) -> tuple[str, TaskResult | SiteFailure] | None:
        """The next answer to any posted task still open, with that task's id, as it arrives; a site that failed
        or gave no answer within its task's `timeout_s` comes as a `SiteFailure` (the task is then withdrawn).
        None when no posted task is open, or none answered within `timeout_s`."""
        ...


class Workflow(ABC):
    """A server-side workflow. Subclasses set `type_name` and `Args` and implement `run`.

    A workflow that keeps state of its own across rounds (beyond the global model) returns it from `state()`
    and takes it back in `restore()`; `checkpoint()` saves both with each round, so a server restart resumes
    it exactly. The runtime calls `restore` (when a state was saved) before `run(..., start_round)`.
    """

    type_name: ClassVar[str]
    Args: ClassVar[type[WorkflowArgs]]
    needs_initial_model: ClassVar[bool] = False
    """Whether the job must give an `initial_model` (checked when the job is loaded)."""

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        if not isinstance(args, self.Args):
            raise TypeError(f"{type(self).__name__} needs {self.Args.__name__}, not {type(args).__name__}")
        if min_sites < 1:
            raise ValueError(f"min_sites must be at least 1, not {min_sites}")
        self.args = args
        self.min_sites = min_sites

    @abstractmethod
    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        """Run to the end and return the final model; resume at `start_round` from `initial` when restarting."""

    def state(self) -> WorkflowState | None:
        """What to save with each round's checkpoint besides the model; None (the default): nothing."""
        return None

    def restore(self, state: WorkflowState) -> None:
        """Take back what `state()` returned when the round being resumed from was saved."""
        raise WorkflowError(f"the {self.type_name} workflow keeps no state, yet a saved state was handed to it")

    def checkpoint(self, fed: Federation, round_no: int, model: Params) -> None:
        """Save round `round_no`: the workflow's state (if it keeps one), then the global model."""
        state = self.state()
        if state is not None:
            fed.save_state(f"round-{round_no}", state)
        fed.save_model(f"round-{round_no}", model)

    @classmethod
    def parse_args(cls, raw: dict[str, Any]) -> WorkflowArgs:
        return cls.Args.model_validate(raw)
