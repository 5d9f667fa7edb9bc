"""The node's exception family: every failure a user can cause or meet while running jobs."""

from __future__ import annotations

from flctl.provisioner.errors import Problem


class NodeError(Exception):
    """Base class: the node (server, site or simulator) could not do what was asked."""


class StateDamaged(NodeError):
    """A node's own state on disk (its database) is damaged: it will not start on it; the message says what to do."""


class JobError(NodeError):
    """A job (its folder, job.yml or bundle) is malformed or invalid; one problem per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConnectionFailed(NodeError):
    """The server cannot be reached, or refused our certificate."""


class NotPermitted(NodeError):
    """The server understood and refused: this identity lacks the right."""


class NotFound(NodeError):
    """No such job (or site)."""


class BadRequest(NodeError):
    """The server refused the input (a job bundle that does not validate…)."""


class TimedOut(NodeError):
    """The server did not answer in time."""


class Failed(NodeError):
    """The server ran the operation and it failed (a job already ended…)."""


class TaskError(NodeError):
    """A task a site cannot take (a kind this flctl does not know); the job fails at that site with the message."""
