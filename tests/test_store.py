"""The server's store: per-site writes in batches, rows kept in memory and written through, heartbeats flushed."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from pathlib import Path

from flctl.node.server.store import JobRow, Store


def job_row(job_id: str = "j1") -> JobRow:
    return JobRow(job_id, "n", "RUNNING", "a", "o", "lead", 0.0, 0.0, 0.0, -1, 1, "fedavg", 1, "all", "", "", "sha", {})


def test_site_states_of_many_sites_in_one_call_leave_the_ones_asked_alone(tmp_path: Path):
    """`set_site_states` sets every site but those in `unless`, keeping each one's round and error."""
    store = Store(tmp_path / "s.db")
    store.add_job(job_row())
    store.set_site_states("j1", ["a", "b", "c"], "starting")
    store.set_site_state("j1", "b", "failed", error="gone")

    store.set_site_states("j1", ["a", "b", "c"], "working", 0, unless=("failed", "offline"))

    assert store.get_job("j1").site_states == {"a": ("working", 0, ""), "b": ("failed", -1, "gone"),
                                               "c": ("working", 0, "")}
    assert store.site_state("j1", "b") == "failed"
    assert store.site_state("j1", "d") is None


def test_site_states_survive_a_reopen(tmp_path: Path):
    """What is written through memory is in the database: a new store (a restarted server) reads it back."""
    store = Store(tmp_path / "s.db")
    store.add_job(job_row())
    store.set_site_states("j1", ["a", "b"], "working", 2)
    store.set_site_state("j1", "a", "answered")
    store.close()

    again = Store(tmp_path / "s.db")

    assert again.site_state("j1", "a") == "answered"
    assert again.get_job("j1").site_states == {"a": ("answered", 2, ""), "b": ("working", 2, "")}


def test_round_metrics_of_every_site_are_stored(tmp_path: Path):
    store = Store(tmp_path / "s.db")

    store.add_round_metrics("j1", 3, {"a": {"loss": 0.5, "acc": 0.9}, "b": {"loss": 0.25}})

    assert sorted(store.metrics("j1")) == [("a", 3, "acc", 0.9, None), ("a", 3, "loss", 0.5, None),
                                           ("b", 3, "loss", 0.25, None)]


def test_heartbeats_are_current_in_memory_and_in_the_database_once_flushed(tmp_path: Path, monkeypatch):
    """A registration is written at once; a heartbeat is seen at once, and stored by `flush` (or `close`)."""
    monkeypatch.setattr("flctl.node.server.store.HEARTBEAT_FLUSH_S", 3600.0)  # no flush by the clock during the test
    store = Store(tmp_path / "s.db")
    store.touch_site("a", "org", 10.0, [], register=True)
    registered = store.site("a")
    assert registered is not None

    store.touch_site("a", "org", 10.0, ["j1"])
    beat = store.site("a")
    assert beat is not None and beat.running_jobs == ["j1"] and beat.registered_at == registered.registered_at
    assert [s.name for s in store.sites()] == ["a"]
    before_flush = Store(tmp_path / "s.db").site("a")
    assert before_flush is not None and before_flush.running_jobs == []

    store.flush()

    after = Store(tmp_path / "s.db").site("a")
    assert after is not None and after.running_jobs == ["j1"] and after.last_heartbeat == beat.last_heartbeat


def test_site_states_are_current_at_once_and_in_the_database_once_flushed(tmp_path: Path, monkeypatch):
    """A thousand sites answering a round are a thousand state changes: memory (and every read through the store)
    has each at once; the database gets them together with the next flush."""
    monkeypatch.setattr("flctl.node.server.store.HEARTBEAT_FLUSH_S", 3600.0)
    store = Store(tmp_path / "s.db")
    store.add_job(job_row())
    store.set_site_states("j1", ["b", "a"], "working", 0)
    store.set_site_state("j1", "b", "answered")

    assert store.get_job("j1").site_states == {"a": ("working", 0, ""), "b": ("answered", 0, "")}
    assert list(store.get_job("j1").site_states) == ["a", "b"]
    assert Store(tmp_path / "s.db").get_job("j1").site_states == {}

    store.flush()

    assert Store(tmp_path / "s.db").get_job("j1").site_states == {"a": ("working", 0, ""), "b": ("answered", 0, "")}


def test_a_job_is_added_with_its_first_event(tmp_path: Path):
    """One call under one lock: whoever sees the job (the scheduler, which then records "started") finds its
    "submitted" event already there."""
    store = Store(tmp_path / "s.db")

    store.add_job(job_row(), ("submitted", "submitted by a (o)", {"submitter": "a"}))

    assert [(e.kind, e.data) for e in store.events(job_id="j1")] == [("submitted", {"submitter": "a"})]


def test_an_event_is_in_the_audit_log_before_any_reader_sees_it(tmp_path: Path):
    """`on_event` (the audit log) runs before the event can be read: a reader started while it runs waits for it, so
    a `job watch` that ends on "finished" always finds the audit record (it once read the log a moment too early)."""
    # Prepare
    read_during_recording: list[bool] = []
    seen: list[list[str]] = []
    reader_done = threading.Event()
    store: Store

    def record(job_id: str, kind: str, message: str, data: dict) -> None:
        if kind != "finished":
            return

        def read() -> None:
            seen.append([e.kind for e in store.events(job_id=job_id)])
            reader_done.set()

        threading.Thread(target=read, daemon=True).start()
        read_during_recording.append(reader_done.wait(0.3))

    store = Store(tmp_path / "s.db", on_event=record)
    store.add_job(job_row())
    # Execute
    store.add_event("j1", "finished", "done")
    reader_done.wait(5)
    # Assert
    assert read_during_recording == [False], "a reader got the event while it was being recorded"
    assert seen == [["finished"]]


def test_a_damaged_database_is_refused_at_open_naming_the_file(tmp_path: Path):
    """A header that is no SQLite's, or a page that fails `PRAGMA quick_check`: StoreDamaged, naming the file."""
    import pytest

    from flctl.node.server.store import StoreDamaged

    store = Store(tmp_path / "s.db")
    for n in range(300):
        store.add_job(job_row(f"job-{n:04d}"))
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray((tmp_path / "s.db").read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[3 * page:3 * page + 64] = b"\xff" * 64  # the header of a b-tree page
    (tmp_path / "s.db").write_bytes(bytes(data))
    with pytest.raises(StoreDamaged, match=r"s\.db is damaged"):
        Store(tmp_path / "s.db")
    (tmp_path / "s.db").write_bytes(b"no database" + bytes(4096))
    with pytest.raises(StoreDamaged, match=r"s\.db is damaged \(file is not a database\)"):
        Store(tmp_path / "s.db")


def test_nan_and_infinite_metrics_are_stored_and_read_back(tmp_path: Path):
    """SQLite keeps a NaN as NULL: the column takes it, and it reads back as NaN; infinities are themselves. A
    round's NaN already logged by the script (`fl.log`) is not recorded twice."""
    store = Store(tmp_path / "s.db")
    store.add_metrics("j1", "a", 0, [("loss", math.nan, 1), ("grad", math.inf, 1), ("low", -math.inf, None)])
    store.add_round_metrics("j1", 0, {"a": {"loss": math.nan, "acc": 0.5}})

    rows = store.metrics("j1")
    assert [(r[2], r[4]) for r in rows] == [("loss", 1), ("grad", 1), ("low", None), ("acc", None)]
    assert math.isnan(rows[0][3]) and rows[1][3] == math.inf and rows[2][3] == -math.inf and rows[3][3] == 0.5


def test_a_database_whose_metrics_took_no_nan_is_made_to_take_them(tmp_path: Path):
    """A server.db made before NaN metrics were kept (metrics.value NOT NULL) has its metrics table made again at
    open: every row kept under its rowid (the metrics exporters count by rowid), and a NaN then goes in."""
    path = tmp_path / "s.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            "CREATE TABLE metrics (job_id TEXT NOT NULL, site TEXT NOT NULL, round INTEGER NOT NULL, name TEXT NOT "
            "NULL, value REAL NOT NULL, step INTEGER, time REAL NOT NULL);"
            "CREATE INDEX metrics_job ON metrics (job_id);"
            "INSERT INTO metrics (rowid, job_id, site, round, name, value, step, time) VALUES "
            "(3, 'j1', 'a', 0, 'loss', 0.5, NULL, 1.0), (7, 'j1', 'a', 1, 'loss', 0.25, 4, 2.0);")
        db.commit()

    store = Store(path)
    store.add_metrics("j1", "a", 2, [("loss", math.nan, None)])
    store.close()

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert [c[3] for c in db.execute("PRAGMA table_info(metrics)") if c[1] == "value"] == [0]  # not NOT NULL
        rows = db.execute("SELECT rowid, round, value, step FROM metrics ORDER BY rowid").fetchall()
        assert rows == [(3, 0, 0.5, None), (7, 1, 0.25, 4), (8, 2, None, None)]
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'metrics_before_nan'").fetchall() == []
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'metrics_job'").fetchall() == [("metrics_job",)]
