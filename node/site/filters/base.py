"""The seam between a job's script and the network at a site: a filter.

A filter sees what a task brings in (`filter_task`, before the script gets it) and what a result sends out
(`filter_result`, once the script answered), outside the script's process: in the job process at a real site, in
the simulation's main process for a simulated one. Which filters run, in which order, is the site's choice (its
`local/privacy.yml`, by the scope the job asks for), never the job's. `FilterPipeline` (`pipeline.py`) runs them;
`FILTERS` (`__init__.py`) names them.

A filter with `needs_params = False` sees tasks and results whose `params` are empty (they stay undecoded: the fast
path) and may change only their meta and metrics. A result filter with `needs_received = True` acts on the update
(what the script changed in the model its task brought): the pipeline keeps each site's last task's params for it,
as they arrived (before the task filters), and hands them over in `FilterContext.received`.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from flctl.node.errors import NodeError
from flctl.node.jobs.tasks import Params, Task, TaskResult

Direction = Literal["task", "result"]
"""What a filter is applied to: the tasks a site brings in, or the results it sends out."""


class FilterError(NodeError):
    """A filter could not process a task or a result: the job fails at the site, and nothing goes out unfiltered."""


@dataclass(frozen=True)
class FilterContext:
    """Where a filter runs: the site, the job, the privacy scope chosen, and the task being brought in or answered."""

    site: str
    job_id: str
    scope: str
    task_kind: str
    round: int
    received: Params | None = None
    """The params the task brought to this site, as they arrived (before the task filters), for a result filter
    with `needs_received`; None otherwise."""
    task_meta: dict[str, Any] = field(default_factory=dict)
    """The meta of the task being answered (a swarm `aggregate` task's weights)."""


class FilterArgs(BaseModel):
    """Base for a filter's arguments (an entry's `args` in privacy.yml); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Filter(ABC):
    """A site filter. Subclasses set `type_name` (its name in privacy.yml), `Args`, `needs_params` and `directions`,
    and override `filter_task` and/or `filter_result` (each returns what goes on; the default passes it unchanged)."""

    type_name: ClassVar[str]
    Args: ClassVar[type[FilterArgs]]
    needs_params: ClassVar[bool] = True
    """Whether it reads or changes the tensors (they are then decoded for it, and encoded again after)."""
    needs_received: ClassVar[bool] = False
    """Whether, on results, it needs the model the task brought (`FilterContext.received`): a filter of the update."""
    directions: ClassVar[frozenset[Direction]] = frozenset(("task", "result"))
    """What it may be applied to (privacy.yml's `apply_to` is checked against it)."""

    def __init__(self, args: FilterArgs) -> None:
        self.args = args

    def filter_task(self, task: Task, ctx: FilterContext) -> Task:
        """What the script is given instead of `task`."""
        return task

    def filter_result(self, result: TaskResult, ctx: FilterContext) -> TaskResult:
        """What the site sends out instead of the script's `result`."""
        return result

    def keep_state(self, path: Path) -> None:
        """Keep what this filter must remember across a restart of the job's process (gaussian_dp: the privacy
        spent) in the file `path`, reading what an earlier process left there; by default there is nothing.
        OSError or ValueError when what is there cannot be read: the site then refuses the job."""
        del path  # nothing to keep
