"""A workflow's own state, saved with each round's checkpoint so that a server restart resumes it exactly.

A stateless workflow (FedAvg) needs only the global model to go on; a stateful one (FedAvgM's momentum,
FedOpt's moments, SCAFFOLD's control variates, a cyclic order) also needs what `Workflow.state()` returns:
`values`, small JSON (numbers, names, lists), and `arrays`, numpy arrays as large as the model. Both go in
one safetensors file, `state/round-N.safetensors` beside `models/round-N.safetensors`: the arrays as its
tensors, the values as JSON in its header's `__metadata__`. The state is written before the round's model,
so a round whose model was saved always has its state too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flctl.node.jobs.tasks import Params

VALUES_KEY = "flctl.workflow_state"
"""The `__metadata__` key holding the state's JSON values."""


@dataclass
class WorkflowState:
    """What a stateful workflow needs, besides the global model, to go on after a restart."""

    values: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable numbers, strings, lists and mappings (a round counter, a site order)."""
    arrays: Params = field(default_factory=dict)
    """name -> numpy array (a momentum buffer, control variates)."""


def report_path(job_dir: Path, name: str) -> Path:
    """Where the report saved under `name` of the job in `job_dir` lives."""
    return job_dir / "reports" / f"{name}.json"


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write a workflow's report as JSON through a temporary file; ValueError when it is not JSON."""
    try:
        text = json.dumps(report, allow_nan=False, indent=1, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the workflow's report {path.stem} is not JSON: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def state_path(job_dir: Path, name: str) -> Path:
    """Where the state saved under `name` (`round-N`) of the job in `job_dir` lives."""
    return job_dir / "state" / f"{name}.safetensors"


def write_state(path: Path, state: WorkflowState) -> None:
    """Write `state` to `path` through a temporary file (a reader never sees half of it). ValueError when its
    values are not JSON or its arrays cannot be stored."""
    from flctl.node.wire import tensors  # numpy: imported when a job runs, not when one is checked

    try:
        values = json.dumps(state.values, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the workflow's state values are not JSON: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors.write_file(tmp, state.arrays, {VALUES_KEY: values})
    os.replace(tmp, path)


def read_state(path: Path) -> WorkflowState:
    """The state saved in `path`; ValueError naming the file when it is not one."""
    from flctl.node.wire import tensors

    try:
        raw = tensors.read_metadata(path).get(VALUES_KEY)
        values = json.loads(raw) if raw is not None else None
        if not isinstance(values, dict):
            raise ValueError(f"no {VALUES_KEY} object in its header")
        return WorkflowState(values, tensors.read_file(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"the workflow state {path.name} cannot be read: {exc}") from None
