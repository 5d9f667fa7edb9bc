"""The jobs the server holds, newest first: status, round n/m, submitter, duration."""

from __future__ import annotations

from textual import on
from textual.message import Message
from textual.widgets import DataTable

from flctl.console.tui import cells
from flctl.console.tui.widgets.keyed_table import KeyedTable
from flctl.node.admin.admin_types import JobInfo


class JobsTable(KeyedTable):
    COLUMNS = ("id", "name", "status", "round", "submitter", "duration")

    class Chosen(Message):
        """The admin pressed enter on a job."""

        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    def show(self, jobs: list[JobInfo], now: float) -> None:
        newest = sorted(jobs, key=lambda j: j.submitted_at, reverse=True)
        self.show_rows([(j.id, (j.id, j.name, j.status, cells.rounds(j), j.submitter, cells.duration(j, now)))
                        for j in newest])

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Chosen(event.row_key.value))
