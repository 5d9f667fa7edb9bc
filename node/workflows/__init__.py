"""Server-side workflows of a job (FedAvg today; cyclic, FedOpt, evaluation… later), one module each.

`WORKFLOWS` maps job.yml's `workflow.type` to the class; add a workflow here to make it usable.
"""

from __future__ import annotations

from flctl.node.workflows.base import Workflow
from flctl.node.workflows.fedavg import FedAvg

WORKFLOWS: dict[str, type[Workflow]] = {cls.type_name: cls for cls in (FedAvg,)}
