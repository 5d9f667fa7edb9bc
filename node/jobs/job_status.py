"""A job's status and a site's state in a job: the one definition the server, the sites, the simulator, the
admin client, the CLI and the TUI share.

Both are `StrEnum`s, so their members are the very strings that travel on the wire, sit in SQLite, show in
`--json` output and on screen (`JobStatus.FAILED == "FAILED"`, `f"{SiteState.OFFLINE}"` is `offline`).
Text read from outside (a protobuf message, a database row, a child process's line) becomes a member with
`parse()` where it is read; a word this version does not know (a newer server's, a damaged row) becomes
`UNKNOWN`, shown as such, never an exception: a job or site in that state is neither active nor ended, so
nothing starts, ends or removes it on a guess.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class _Vocabulary(StrEnum):
    """Words with an UNKNOWN member that text from outside falls back to."""

    @classmethod
    def parse(cls, text: str) -> Self:
        """The member named by `text`, or UNKNOWN."""
        try:
            return cls(text)
        except ValueError:
            return cls["UNKNOWN"]


class JobStatus(_Vocabulary):
    """Where a job is: SUBMITTED (waiting for sites or a slot) -> RUNNING -> FINISHED, FAILED or ABORTED."""

    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    """A word this version does not know; also what the task board tells a site asking about a job it does not
    hold (the server restarted, or the job was removed)."""

    def is_active(self) -> bool:
        """Waiting to run or running: the scheduler and the runner still own it."""
        return self in ACTIVE

    def is_ended(self) -> bool:
        """FINISHED, FAILED or ABORTED: it will not change again, and may be removed."""
        return self in ENDED

    @property
    def event_kind(self) -> str:
        """The kind of the event that records a job ending with this status: finished, failed, aborted."""
        return self.value.lower()


ACTIVE: tuple[JobStatus, ...] = (JobStatus.SUBMITTED, JobStatus.RUNNING)
ENDED: tuple[JobStatus, ...] = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.ABORTED)
ENDING_EVENT_KINDS = frozenset(status.event_kind for status in ENDED)


def ends_job(event_kind: str) -> bool:
    """Whether an event of this kind is the last of its job (finished, failed or aborted)."""
    return event_kind in ENDING_EVENT_KINDS


class SiteState(_Vocabulary):
    """A site's part in one job, as the server records it (and a site reports: running, finished, failed)."""

    STARTING = "starting"
    """Told to start its job process (again, when it rejoins)."""
    WORKING = "working"
    """Given a task; it has not answered yet."""
    ANSWERED = "answered"
    """Its result for the current task arrived."""
    LATE = "late"
    """Its task was withdrawn before it answered (the workflow went on without it)."""
    RUNNING = "running"
    """Its job process reported that it runs."""
    FINISHED = "finished"
    """Its job process reported that its part ended well (its script exited after the job's end)."""
    FAILED = "failed"
    """Its part failed (its script raised or exited, a filter failed, it refused the job): the reason is its error;
    the job goes on without it while `min_sites` can still answer."""
    OFFLINE = "offline"
    """Its daemon fell silent: the job goes on without it until it is heard from again."""
    ABORTED = "aborted"
    """The job was aborted while the site's part was not over (its training stopped)."""
    UNKNOWN = "unknown"
    """A word this version does not know."""

    def is_out(self) -> bool:
        """Its part is over or suspended (finished, failed or offline): it gets no task and is not dropped again."""
        return self in OUT

    def is_dropped(self) -> bool:
        """The job goes on without it (offline or failed): what it sends is not taken."""
        return self in DROPPED


REPORTED: tuple[SiteState, ...] = (SiteState.RUNNING, SiteState.FINISHED, SiteState.FAILED)
"""What a site may report of its own part (besides nothing: a report of logs and metrics only)."""
DROPPED: tuple[SiteState, ...] = (SiteState.OFFLINE, SiteState.FAILED)
OUT: tuple[SiteState, ...] = (SiteState.OFFLINE, SiteState.FAILED, SiteState.FINISHED, SiteState.ABORTED)
