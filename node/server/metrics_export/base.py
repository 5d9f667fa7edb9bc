"""What every metrics exporter is given and must do.

An exporter takes a job's metric values as they reach the server (`write`, in batches) and ends the job's
record when the job has ended (`close`). It runs in the job's exporter process (`feeder`), never in the daemon,
and never fails the job: an exporter that raises is logged once, in the job's log, and left out from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ExportError(Exception):
    """An exporter cannot go on (its destination refused or cannot be reached); the message says what to do."""


@dataclass(frozen=True)
class MetricPoint:
    """One metric value of one site, as the server stored it."""

    site: str
    round: int
    name: str
    value: float
    step: int | None  # the step the script gave (fl.log), else None: the round is the step
    time: float

    @property
    def x(self) -> int:
        """Where the value goes on a plot's x axis: the script's step, else the round."""
        return self.step if self.step is not None else self.round


@dataclass(frozen=True)
class JobContext:
    """The job whose metrics are exported."""

    job_id: str
    job_name: str
    job_dir: Path
    sites: list[str]
    workflow: str
    workflow_args: dict[str, Any] = field(default_factory=dict)


class Exporter(Protocol):
    """A destination for a job's metrics (one module each: tensorboard, mlflow, wandb)."""

    name: str
    """What the job's log calls it: "TensorBoard", "MLflow at http://…"."""

    def write(self, points: list[MetricPoint]) -> None:
        """Record `points` (they arrive in the order the server stored them)."""

    def close(self, status: str) -> None:
        """The job ended with `status` (FINISHED, FAILED, ABORTED; "" when the server stopped first)."""
