"""What a site may add to a job's log and metrics (node/server/report_limits.py): long lines cut with a marker,
lines and metric values per site per job and minute capped, and one note per flooded minute, not one per line."""

from __future__ import annotations

from flctl.node.server.report_limits import ReportGate, ReportLimits

LIMITS = ReportLimits(line_chars=10, lines_per_minute=5, metrics_per_minute=3)


class Clock:
    """The gate's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_long_line_is_cut_with_a_marker_saying_how_much():
    """A line over the length keeps its start and says how many characters went; one within it is kept whole."""
    gate = ReportGate(LIMITS)
    # Execute
    kept, note = gate.lines("j1", "site-1", [(1.0, "0123456789abc"), (2.0, "short")])
    # Assert
    assert kept == [(1.0, "0123456789 [... 3 more characters cut (max_log_line_chars)]"), (2.0, "short")]
    assert note == ""


def test_a_flood_is_cut_at_the_cap_and_noted_once_a_minute():
    """7 then 4 lines in one minute against a cap of 5: 5 kept and one note; the next minute takes 5 again."""
    clock = Clock()
    gate = ReportGate(LIMITS, clock)
    lines = [(1.0, f"l{i}") for i in range(7)]
    # Execute
    first, note1 = gate.lines("j1", "site-1", lines)
    second, note2 = gate.lines("j1", "site-1", lines[:4])
    clock.now += 60
    third, note3 = gate.lines("j1", "site-1", lines)
    # Assert
    assert (first, second, third) == (lines[:5], [], lines[:5])
    assert note1 == ("site-1 sent more than 5 log lines a minute; the rest of this minute was dropped (the server's "
                     "local/resources.yml max_log_lines_per_minute)")
    assert note2 == "" and note3 == note1


def test_sites_jobs_and_kinds_have_caps_of_their_own():
    """site-1's flood in job j1 leaves site-2, job j2 and site-1's metrics their whole allowance."""
    gate = ReportGate(LIMITS, Clock())
    lines = [(1.0, "x")] * 9
    # Execute
    gate.lines("j1", "site-1", lines)
    # Assert
    assert len(gate.lines("j1", "site-2", lines)[0]) == 5
    assert len(gate.lines("j2", "site-1", lines)[0]) == 5
    kept, note = gate.metrics("j1", "site-1", list(range(4)))
    assert kept == [0, 1, 2] and "site-1 sent more than 3 metric values a minute" in note
