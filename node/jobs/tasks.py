"""What travels between a workflow and the sites, as plain domain values (no protobuf here).

Parameters are a flat mapping of tensor name to numpy array; they travel as safetensors bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is not imported to check a job at submit (the CLI stays quick)
    import numpy as np

Params = dict[str, "np.ndarray"]

SCAFFOLD_C = "@scaffold_c/"
"""A task's tensors named `@scaffold_c/<name>` are SCAFFOLD's server control variate for the model's `<name>`,
not part of the model: the Client API keeps them apart from what the script receives."""
SCAFFOLD_DC = "@scaffold_dc/"
"""An answer's tensors named `@scaffold_dc/<name>` are the site's SCAFFOLD control-variate update."""


@dataclass
class Task:
    """One unit of work a workflow sends to sites: `train` (FedAvg), later `evaluate`, `statistics`…"""

    name: str
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
