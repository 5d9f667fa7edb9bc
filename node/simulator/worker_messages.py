"""The simulator worker link: what the simulation's main process (`runtime`) and a worker (`worker`) tell each other.

Each message is one frame on their `multiprocessing` pipe, a line of JSON (never a pickle); a task's
or a result's params (safetensors bytes, `size` of them) follow as the next frame, as they are:

    main -> worker   SimTask(task_id, task_kind, round, meta, sites, size) + params      SimEnd()
    worker -> main   SimResult(site, task_id, num_examples, metrics, meta, size) + params
                     SimFailure(site, task_id, reason)    SimMetric(site, round, name, value, step)
                     SimEnded()
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field

from flctl.node.process.links import Link, LinkError, LinkMessage

LINK = "simulator worker link"


class SimTask(LinkMessage):
    """A task for `sites` (those of the worker); its params follow."""

    kind: Literal["task"] = "task"
    task_id: int
    task_kind: str
    round: int
    meta: dict[str, Any] = Field(default_factory=dict)
    sites: list[str]
    size: int = Field(ge=0)


class SimEnd(LinkMessage):
    """No more tasks: the job has ended."""

    kind: Literal["end"] = "end"


class SimResult(LinkMessage):
    """`site`'s answer to `task_id`; its params follow."""

    kind: Literal["result"] = "result"
    site: str
    task_id: int
    num_examples: int
    metrics: dict[str, float] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    size: int = Field(ge=0)


class SimFailure(LinkMessage):
    """`site` failed `task_id` (its script exited, crashed, or a filter refused)."""

    kind: Literal["failure"] = "failure"
    site: str
    task_id: int
    reason: str


class SimMetric(LinkMessage):
    """A metric `site`'s script logged during `round`."""

    kind: Literal["metric"] = "metric"
    site: str
    round: int
    name: str
    value: float
    step: int | None = None


class SimEnded(LinkMessage):
    """The worker's scripts have returned (or were given up on): it sends nothing more."""

    kind: Literal["ended"] = "ended"


ToWorker = SimTask | SimEnd
FromWorker = SimResult | SimFailure | SimMetric | SimEnded
TO_WORKER: Link[ToWorker] = Link(LINK, Annotated[ToWorker, Field(discriminator="kind")])
FROM_WORKER: Link[FromWorker] = Link(LINK, Annotated[FromWorker, Field(discriminator="kind")])

M = TypeVar("M", ToWorker, FromWorker)


def send(conn: Connection[Any, Any], link: Link[M], message: M, payload: bytes = b"") -> None:
    """Send `message` on `conn`, then its params `payload` (as `size` announced), if any."""
    conn.send_bytes(link.encode(message))
    if payload:
        conn.send_bytes(payload)


def receive(conn: Connection[Any, Any], link: Link[M]) -> tuple[M, bytes]:
    """The next message on `conn` and its params (b"" for none); `LinkError` when it is refused, EOFError or
    OSError when the pipe has ended."""
    message = link.decode(conn.recv_bytes())
    size = message.size if isinstance(message, SimTask | SimResult) else 0
    payload = conn.recv_bytes() if size else b""
    if len(payload) != size:
        raise LinkError(link.name, f"a {message.kind!r} message announced {size} bytes of params, and {len(payload)} "
                                   "came")
    return message, payload
