"""Round durations for the Prometheus histogram, from job events, pure: exact sums and bucket counts."""

from __future__ import annotations

from flctl.node.server.prometheus_endpoint import RoundTimes
from flctl.node.server.store import EventRow


def event(seq: int, job: str, time: float, kind: str, round_no: int) -> EventRow:
    return EventRow(seq, job, time, kind, "", {"round": round_no})


def test_a_round_lasts_from_its_first_task_to_its_end_across_feeds_and_jobs():
    """Two jobs interleaved, a second task in a round (evaluation) ignored, events fed in two scrapes."""
    rounds = RoundTimes(buckets=(1, 5, 10))
    rounds.feed([event(1, "a", 100.0, "task", 0), event(2, "b", 101.0, "task", 0), event(3, "a", 100.5, "task", 0),
                 event(4, "a", 103.0, "round", 0)])
    rounds.feed([event(5, "b", 101.5, "round", 0), event(6, "a", 103.0, "task", 1), event(7, "a", 111.0, "round", 1),
                 event(8, "a", 112.0, "round", 7)])  # a round whose start was never seen: left out
    assert rounds.count == 3 and rounds.total_s == 3.0 + 0.5 + 8.0
    assert rounds.cumulative() == [("1", 1.0), ("5", 2.0), ("10", 3.0), ("+Inf", 3.0)]
    assert rounds.started == {}
