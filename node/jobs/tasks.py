"""What travels between a workflow and the sites, as plain domain values (no protobuf here).

Parameters are a flat mapping of tensor name to numpy array; they travel as safetensors bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is not imported to check a job at submit (the CLI stays quick)
    import numpy as np

Params = dict[str, "np.ndarray"]

PARAMS_TYPE = "params_type"
"""The key of an answer's meta that says what its params are: absent or "full", the model; "diff", what the site's
training added to the model it received."""
PARAMS_TYPES = ("full", "diff")

SCAFFOLD_C = "@scaffold_c/"
"""A task's tensors named `@scaffold_c/<name>` are SCAFFOLD's server control variate for the model's `<name>`,
not part of the model: the Client API keeps them apart from what the script receives."""
SCAFFOLD_DC = "@scaffold_dc/"
"""An answer's tensors named `@scaffold_dc/<name>` are the site's SCAFFOLD control-variate update."""


class TaskKind(StrEnum):
    """What a task asks of a site; its value travels to the site and reaches the script as `model.task`. A new
    kind (`statistics`, a swarm step…) is a new member."""

    TRAIN = "train"
    """Train from the task's params; answer with a model (full, or an update) and metrics."""
    EVALUATE = "evaluate"
    """Evaluate the task's params on local data; answer with metrics only."""
    SUBMIT_MODEL = "submit_model"
    """Answer with the site's own best local model."""
    AGGREGATE = "aggregate"
    """Answer with the weighted mean of the sites' models the task carries (a swarm round's aggregator): the
    Client API does it in the site's script process, the script never sees the task."""
    STATISTICS = "statistics"
    """Compute figures over the site's data (`meta["step"]`: summary, spread, cohort, data_check); the script's data
    function answers it (`fl.serve_statistics`), and the site's privacy rules are applied to what it returns in the
    site's job process, outside the script (`flctl.node.site.statistics_release`)."""

    @classmethod
    def parse(cls, value: str) -> TaskKind:
        """The kind named `value`; TaskError when this flctl does not know it (a newer server's kind)."""
        try:
            return cls(value)
        except ValueError:
            from flctl.node.errors import TaskError  # not at the top: a job's script imports this module, confined

            known = ", ".join(kind.value for kind in cls)
            raise TaskError(f"the server sent a task of kind {value!r}, which this site's flctl does not know "
                           f"(it knows {known}); upgrade flctl at this site") from None


@dataclass
class Task:
    """One unit of work a workflow sends to sites. A task is addressed by the sites it is sent to: sent to one site,
    it is that site's alone (a cyclic or peer-to-peer step relays a result to the next site that way)."""

    kind: TaskKind
    round: int
    params: Params
    meta: dict[str, Any] = field(default_factory=dict)
    saved_as: str = ""
    """The name `params` were saved under with `Federation.save_model`, unchanged since, or "": a federation may
    then send that copy instead of writing the model once more."""


@dataclass
class TaskResult:
    """A site's answer to a task."""

    site: str
    params: Params
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SiteFailure:
    """A site could not answer a task (its script raised, it went offline, it refused the job)."""

    site: str
    reason: str
