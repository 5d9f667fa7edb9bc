"""The server job link: what the server daemon (`job_runner`) and a job's process (`job_process`) tell each other.

The daemon writes `JOB_DIR/run.json` (`RunPlan`) and starts the job process; then they talk in
JSON lines, one message a line: requests on the process's stdout (`JOB_REQUESTS`), answers on its
stdin (`JOB_ANSWERS`). Models never travel here: a task or a result names a safetensors file in the
job folder, except a result of at most `task_board.INLINE_BYTES`, which comes inside its message
(base64, `data`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from flctl.node.process.links import Link, LinkMessage

LINK = "server job link"


class RunPlan(LinkMessage):
    """`run.json`: which job the process runs, on which sites, and where it resumes (after a server restart)."""

    job_id: str
    spec: dict[str, Any]
    sites: list[str]
    min_sites: int
    initial: str | None = None  # the checkpoint a resumed job starts from
    start_round: int = 0
    state: str | None = None  # a stateful workflow's state saved with that checkpoint
    job_isolation: str = "required"  # the server's local/resources.yml: how job code it runs is confined
    kit_root: str | None = None  # the server's kit: a workflow may read its startup/ (the HE public context)


# ---------------------------------------------------------------- job process -> daemon
class PostTask(LinkMessage):
    """Post a task to `sites`; its model is the file `payload`."""

    kind: Literal["task"] = "task"
    task_id: str
    task_kind: str
    round: int
    sites: list[str]
    payload: str
    meta: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float


class CancelTask(LinkMessage):
    """The workflow no longer waits for `sites`' answers to `task_id`."""

    kind: Literal["cancel"] = "cancel"
    task_id: str
    sites: list[str]


class ModelSaved(LinkMessage):
    """A model was saved in the job folder as `models/NAME.safetensors`."""

    kind: Literal["model"] = "model"
    name: str


class RoundDone(LinkMessage):
    """Round `round` is complete, with each site's metrics."""

    kind: Literal["round"] = "round"
    round: int
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)


class LogLine(LinkMessage):
    """A line for the job's server log."""

    kind: Literal["log"] = "log"
    line: str


class ReportSaved(LinkMessage):
    """The workflow saved a report (a cross-site evaluation's matrix…) as `reports/NAME.json`."""

    kind: Literal["report"] = "report"
    name: str


class JobDone(LinkMessage):
    """The job has ended (the process exits next)."""

    kind: Literal["done"] = "done"
    status: Literal["FINISHED", "FAILED", "ABORTED"]
    error: str = ""


JobRequest = PostTask | CancelTask | ModelSaved | ReportSaved | RoundDone | LogLine | JobDone


# ---------------------------------------------------------------- daemon -> job process
class SiteResult(LinkMessage):
    """`site`'s answer to `task_id`: its model in the file `path`, or (a small one) base64 in `data`."""

    kind: Literal["result"] = "result"
    task_id: str
    site: str
    path: str = ""
    data: str = ""
    num_examples: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


class SiteFailed(LinkMessage):
    """`site` failed (while on `task_id`, if any): its job process there is gone."""

    kind: Literal["failure"] = "failure"
    task_id: str = ""
    site: str
    reason: str = "failed"


class SiteRejoined(LinkMessage):
    """A site that failed is back in the job."""

    kind: Literal["rejoin"] = "rejoin"
    site: str


class AbortJob(LinkMessage):
    """Stop the job now."""

    kind: Literal["abort"] = "abort"
    reason: str = "aborted"


JobAnswer = SiteResult | SiteFailed | SiteRejoined | AbortJob

RUN_PLAN: Link[RunPlan] = Link(f"{LINK} (run.json)", RunPlan)
JOB_REQUESTS: Link[JobRequest] = Link(LINK, Annotated[JobRequest, Field(discriminator="kind")])
"""What the job process writes on its stdout."""
JOB_ANSWERS: Link[JobAnswer] = Link(LINK, Annotated[JobAnswer, Field(discriminator="kind")])
"""What the daemon writes on the job process's stdin."""
