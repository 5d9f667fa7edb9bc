"""What a peer wrote reaches the console's screen as written, never acted on: a site's failure reason (a job's
error, a site's cell), its log lines, a metric's name and a refusal's message carry an OSC 52 clipboard write, a
clear-screen, a hide-text, a C1 CSI and markup for a link (OSC 8) and bold; the terminal receives each control
character as its escape and the markup as its text."""

from __future__ import annotations

import dataclasses

from textual.widgets import DataTable, Label, Log

from flctl.console.tui.screens.job import JobScreen
from flctl.node import errors
from flctl.node.admin.admin_types import JobInfo, JobSite, LogEntry

from .driving import notices, online, recorded_app, synchronously, until
from .recorded_admin import NOW, RecordedAdmin

CLIPBOARD = "\x1b]52;c;ZXZpbA==\x1b\\"  # OSC 52 (write the clipboard), ended by ST
LINK = "[link='https://evil.example']click[/link] [b]bold[/b]"
ATTACK = f"boom{CLIPBOARD}\x1b[2J\x1b[8mhidden\x9b31m {LINK}"
SHOWN = f"boom\\x1b]52;c;ZXZpbA==\\x1b\\\\x1b[2J\\x1b[8mhidden\\x9b31m {LINK}"
"""ATTACK as the console shows it (the ST's backslash is the peer's own: shown as it is)."""


class PeerWrites(RecordedAdmin):
    """The recorded federation, where site-1's reason, log line and metric name, and an abort's refusal, carry
    control sequences."""

    def __init__(self) -> None:
        super().__init__()
        running = self.jobs[1]
        self.jobs[1] = dataclasses.replace(
            running, error=f"site-1: {ATTACK}", sites=[JobSite("site-1", "failed", 2, ATTACK), *running.sites[1:]],
            last_metrics={"site-1": {f"loss{ATTACK}": 1.0}})
        self.log_lines[running.id] = [LogEntry("site-1", NOW - 69, f"epoch 1 {ATTACK}\n14:12:12 [site-2] forged")]

    def abort_job(self, job_id: str) -> JobInfo:
        self._called("abort_job", job_id)
        raise errors.NodeError(f"the server refused: {ATTACK}")


def terminal_bytes(app: object) -> str:
    """What the console wrote to the terminal for the whole screen: styles' escape codes and the text between."""
    update = app.screen._compositor.render_update(full=True)  # type: ignore[attr-defined]
    return str(update.render_segments(app.console))  # type: ignore[attr-defined]


@synchronously
async def test_a_peers_control_sequences_are_shown_not_acted_on() -> None:
    # Prepare
    app = recorded_app(PeerWrites())
    async with app.run_test(size=(200, 50)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.query_one(Log).line_count)
        screen = terminal_bytes(app)
        title = str(app.screen.query_one("#job-title", Label).render())
        cells = [str(cell) for cell in app.screen.query_one("#job-sites", DataTable).get_row_at(0)]
        lines = list(app.screen.query_one(Log).lines)
        await pilot.press("a")
        await pilot.press("y")
        await until(pilot, lambda: any("refused" in n for n in notices(app)))
        # Assert
        for sequence in ("\x1b]52", "\x1b[2J", "\x1b[8m", "\x9b", "\x1b]8;"):  # OSC 8: a link
            assert sequence not in screen
        assert f"site-1: {SHOWN}" in title
        assert SHOWN in cells
        assert lines[0].endswith(f"[site-1] epoch 1 {SHOWN}")
        assert lines[1] == " " * lines[0].index("epoch") + "14:12:12 [site-2] forged"  # indented: not a line of its own
        assert len(lines) == 2
        assert any(f"the server refused: {SHOWN}" in n for n in notices(app))
