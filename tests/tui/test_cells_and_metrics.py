"""Pure pieces of the console: how values read in cells, and metric series built from round events."""

from __future__ import annotations

import math

from flctl.console.tui import cells
from flctl.console.tui.metrics import MetricHistory, drawable

from .recorded_admin import DAY, NOW, RecordedAdmin


def test_ages_read_short() -> None:
    """Ages are 4s, 3m12s, 2h05m, 3d; negative ages (clock skew) read 0s."""
    assert [cells.age(s) for s in (4, 192, 7500, 3 * 86400 + 5, -3)] == ["4s", "3m12s", "2h05m", "3d", "0s"]


def test_expiry_warns_within_thirty_days() -> None:
    """A certificate shows its date; within 30 days also how soon; past it, that it expired."""
    assert cells.expiry(NOW + 300 * DAY, NOW) == "2027-07-18"
    assert cells.expiry(NOW + 12 * DAY, NOW) == "2026-10-03 (in 12d)"
    assert cells.expiry(NOW - DAY, NOW).endswith("(expired)")
    assert cells.expiry(0, NOW) == "-"


def test_job_cells() -> None:
    """Round n/m counts completed rounds; duration runs until now for a running job; '-' before the start."""
    running, finished, waiting = RecordedAdmin().jobs[1], RecordedAdmin().jobs[0], RecordedAdmin().jobs[2]
    assert (cells.rounds(running), cells.duration(running, NOW)) == ("2/5", "1m15s")
    assert (cells.rounds(finished), cells.duration(finished, NOW)) == ("3/3", "20s")
    assert (cells.rounds(waiting), cells.duration(waiting, NOW)) == ("-", "-")


def test_history_keeps_one_point_per_round_in_order() -> None:
    """Round events fill a series per metric and site; a repeated round replaces its point; junk is ignored."""
    # Prepare
    history = MetricHistory()
    # Execute
    added = [history.add_round({"round": 1, "metrics": {"a": {"loss": 0.5}, "b": {"loss": 0.7, "acc": 0.9}}}),
             history.add_round({"round": 0, "metrics": {"a": {"loss": 1.0}}}),
             history.add_round({"round": 1, "metrics": {"a": {"loss": 0.4}}}),
             history.add_round({"round": "x"}),
             history.add_round({"round": 2, "metrics": {"a": {"note": "text"}}})]
    # Assert
    assert added == [True, True, True, False, False]
    assert history.names == ["acc", "loss"]
    assert history.series("loss") == {"a": [(0, 1.0), (1, 0.4)], "b": [(1, 0.7)]}
    assert history.series("missing") == {}


def test_a_plot_leaves_out_nan_and_infinite_points_and_counts_them() -> None:
    series = {"site-1": [(0, 1.0), (1, math.nan), (2, 0.5)], "site-2": [(0, math.inf), (1, -math.inf)]}
    assert drawable(series) == ({"site-1": [(0, 1.0), (2, 0.5)]}, 3)
    assert drawable({}) == ({}, 0)
