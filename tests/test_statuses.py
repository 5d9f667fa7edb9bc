"""Job statuses and sites' states in jobs: one definition (`flctl.node.jobs.job_status`), the same strings everywhere,
parsed where they are read, and no bare status literal left in the code."""

from __future__ import annotations

import ast
import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from flctl.node.admin.admin_types import Event, JobInfo
from flctl.node.jobs.job_status import ACTIVE, DROPPED, ENDED, OUT, REPORTED, JobStatus, SiteState, ends_job
from flctl.node.server.federation_service import _report_refusal
from flctl.node.server.job_records import load_record, save_record
from flctl.node.server.job_runner import JobRunner, _Running
from flctl.node.server.site_hub import SiteHub
from flctl.node.server.store import JobRow, Store
from flctl.node.server.task_board import TaskBoard
from flctl.node.wire import serde
from flctl.node.wire.proto import flctl_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
ENUM_MODULE = ROOT / "node" / "jobs" / "job_status.py"
WORDS = {member.value for member in (*JobStatus, *SiteState)}
STATUS_NAMES = ("status", "state")


def job_row(status: JobStatus = JobStatus.RUNNING) -> JobRow:
    return JobRow("j1", "n", status, "a", "o", "lead", 0.0, 0.0, 0.0, -1, 1, "fedavg", 1, "all", "", "", "sha", {},
                  {"s1": (SiteState.WORKING, 0, "")})


# ------------------------------------------------------------------ the vocabulary
def test_the_strings_on_the_wire_in_the_database_and_on_screen_stay_the_same():
    """Members are the very strings flctl has always written: renaming one would change what users and old data see."""
    assert [s.value for s in JobStatus] == ["SUBMITTED", "RUNNING", "FINISHED", "FAILED", "ABORTED", "UNKNOWN"]
    assert [s.value for s in SiteState] == ["starting", "working", "answered", "late", "running", "finished",
                                            "failed", "offline", "aborted", "unknown"]
    assert JobStatus.FAILED == "FAILED" and f"{SiteState.OFFLINE}" == "offline" and str(JobStatus.RUNNING) == "RUNNING"
    shown = json.dumps({"status": JobStatus.ABORTED, "state": SiteState.LATE})
    assert shown == '{"status": "ABORTED", "state": "late"}'


def test_parse_gives_the_member_or_unknown():
    """Text from outside becomes a member; a word this version does not know becomes UNKNOWN, never an exception."""
    assert JobStatus.parse("FINISHED") is JobStatus.FINISHED
    assert SiteState.parse("offline") is SiteState.OFFLINE
    assert JobStatus.parse("PAUSED") is JobStatus.UNKNOWN
    assert JobStatus.parse("finished") is JobStatus.UNKNOWN  # statuses are upper case, states lower case
    assert SiteState.parse("") is SiteState.UNKNOWN


def test_active_and_ended_statuses():
    """SUBMITTED and RUNNING are active, FINISHED, FAILED and ABORTED ended; UNKNOWN is neither (nothing acts on it)."""
    assert [s for s in JobStatus if s.is_active()] == list(ACTIVE) == [JobStatus.SUBMITTED, JobStatus.RUNNING]
    assert [s for s in JobStatus if s.is_ended()] == list(ENDED) == [JobStatus.FINISHED, JobStatus.FAILED,
                                                                       JobStatus.ABORTED]
    assert not JobStatus.UNKNOWN.is_active() and not JobStatus.UNKNOWN.is_ended()


def test_a_job_ends_with_the_event_named_after_its_status():
    """The last event of a job is its status in lower case; `ends_job` knows those and nothing else."""
    assert [s.event_kind for s in ENDED] == ["finished", "failed", "aborted"]
    assert all(ends_job(s.event_kind) for s in ENDED)
    assert not any(ends_job(kind) for kind in ("submitted", "started", "round", "site_failed", "aborting", "unknown"))
    assert Event(1, "j1", 0.0, "aborted", "", {}).ends_job


def test_site_state_groups():
    """A dropped site (offline, failed) sends nothing that is taken; an out one (also finished, aborted) is not dropped
    again; a site reports only running, finished or failed."""
    assert [s for s in SiteState if s.is_dropped()] == [SiteState.FAILED, SiteState.OFFLINE]
    assert [s for s in SiteState if s.is_out()] == [SiteState.FINISHED, SiteState.FAILED, SiteState.OFFLINE,
                                                    SiteState.ABORTED]
    assert set(DROPPED) < set(OUT)
    assert REPORTED == (SiteState.RUNNING, SiteState.FINISHED, SiteState.FAILED)


# ------------------------------------------------------------------ parsed where read
def test_serde_parses_statuses_from_the_wire_and_keeps_unknown_ones_as_unknown():
    """A newer server's status reaches an older client as UNKNOWN: listed, neither active nor ended, no crash."""
    msg = pb.JobInfo(id="j1", status="FINISHED", sites=[pb.SiteState(name="s1", state="finished")])
    newer = pb.JobInfo(id="j2", status="PAUSED", sites=[pb.SiteState(name="s1", state="sleeping")])

    info, odd = serde.job_from_pb(msg), serde.job_from_pb(newer)

    assert info.status is JobStatus.FINISHED and info.sites[0].state is SiteState.FINISHED and info.ended
    assert odd.status is JobStatus.UNKNOWN and odd.sites[0].state is SiteState.UNKNOWN and not odd.ended
    assert odd.to_json()["status"] == "UNKNOWN"


def test_job_info_rounds_done_reads_the_status():
    """A FINISHED job has done all its rounds; another has done those before the one in progress."""
    finished = serde.job_from_pb(pb.JobInfo(status="FINISHED", round=2, rounds=3))
    running = serde.job_from_pb(pb.JobInfo(status="RUNNING", round=2, rounds=3))
    assert (finished.rounds_done, running.rounds_done) == (3, 2)
    assert isinstance(finished, JobInfo)


def test_the_store_parses_what_it_reads_and_keeps_an_unknown_status_out_of_every_list(tmp_path: Path):
    """Rows come back as members; a status or state this version does not know (a newer server's database) reads
    as UNKNOWN, and such a job is neither scheduled nor swept as ended."""
    store = Store(tmp_path / "s.db")
    store.add_job(job_row())
    store.set_site_state("j1", "s1", SiteState.ANSWERED)
    store.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE jobs SET status = 'PAUSED'")
        db.execute("INSERT INTO job_sites (job_id, site, state) VALUES ('j1', 's2', 'sleeping')")

    again = Store(tmp_path / "s.db")
    job = again.get_job("j1")

    assert job is not None and job.status is JobStatus.UNKNOWN
    assert job.site_states == {"s1": (SiteState.ANSWERED, -1, ""), "s2": (SiteState.UNKNOWN, -1, "")}
    assert again.site_state("j1", "s2") is SiteState.UNKNOWN
    assert again.list_jobs(ACTIVE) == [] and again.list_jobs(ENDED) == []
    assert [j.id for j in again.list_jobs()] == ["j1"]


def test_a_job_record_on_disk_comes_back_with_members(tmp_path: Path):
    """`record.json` (what `flctl node recover` rebuilds from) holds the strings and reads back as members."""
    save_record(tmp_path, job_row(JobStatus.ABORTED))

    job = load_record(tmp_path)

    assert json.loads((tmp_path / "record.json").read_text())["status"] == "ABORTED"
    assert job.status is JobStatus.ABORTED and job.site_states["s1"][0] is SiteState.WORKING


def test_a_site_may_report_only_its_own_part_in_words_it_knows():
    """The server refuses a report in a word it does not know, naming that word; an empty one carries logs only."""
    job = job_row()

    unknown = _report_refusal("s1", job, SiteState.parse("sleeping"), "sleeping")

    assert unknown is not None and "unknown status 'sleeping'" in unknown[1]
    assert _report_refusal("s1", job, None, "") is None
    assert _report_refusal("s1", job, SiteState.FINISHED, "finished") is None
    ended = job_row(JobStatus.FINISHED)
    assert _report_refusal("s1", ended, SiteState.FAILED, "failed") is None  # how its part ended, once
    assert _report_refusal("s1", ended, SiteState.RUNNING, "running") is not None


def test_a_job_never_ends_in_a_status_that_is_not_an_end(tmp_path: Path):
    """A job process that ends its job as UNKNOWN (or RUNNING) fails it, saying so: the job never stays unended."""
    store = Store(tmp_path / "s.db")
    store.add_job(job_row())
    runner = JobRunner(store, TaskBoard(), SiteHub(), tmp_path, on_end=lambda job_id: None, spare=False)
    run = _Running(job_row(), [], subprocess.Popen(["true"]), threading.Lock())

    runner._finish(run, JobStatus.parse("PAUSED"), "")

    job = store.get_job("j1")
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error == "the job process ended the job as UNKNOWN"
    assert ends_job(store.events(0, "j1")[-1].kind)
    run.process.wait()


# ------------------------------------------------------------------ no literal left
def _is_status_name(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name in STATUS_NAMES or name.endswith(tuple(f"_{n}" for n in STATUS_NAMES))


def _words_in(node: ast.expr | None) -> list[str]:
    """Status words `node` holds as a literal: a string, or a tuple, list or set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in WORDS:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [word for element in node.elts for word in _words_in(element)]
    return []


def status_literals(source: str) -> list[tuple[int, str]]:
    """(line, word) of every status word compared (`==`, `!=`, `in (...)`), assigned to or passed as a status or state
    (`x.status = ...`, `status=...`), or stored under a "status"/"state" key."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        words: list[str] = []
        if isinstance(node, ast.Compare):
            for left, op, right in zip([node.left, *node.comparators[:-1]], node.ops, node.comparators, strict=True):
                if isinstance(op, ast.Eq | ast.NotEq | ast.Is | ast.IsNot):
                    words += _words_in(left) + _words_in(right)
                elif isinstance(op, ast.In | ast.NotIn) and not isinstance(right, ast.Constant):
                    words += _words_in(right)  # `"failed" in line` is a search in text, not a status
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    words += [w for t, v in zip(target.elts, node.value.elts, strict=False) if _is_status_name(t)
                              for w in _words_in(v)]
                elif _is_status_name(target):
                    words += _words_in(node.value)
        elif isinstance(node, ast.keyword) and node.arg in STATUS_NAMES:
            words += _words_in(node.value)
        elif isinstance(node, ast.Dict):
            words += [w for k, v in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant) and k.value in STATUS_NAMES for w in _words_in(v)]
        found += [(getattr(node, "lineno", 0), word) for word in words]
    return found


def test_the_scan_finds_status_literals_and_leaves_other_words_alone():
    """What the scan below counts as a bare status, and what it does not."""
    flagged = """
if job.status == "RUNNING": pass
if state in ("offline", "failed"): pass
job.status = "FAILED"
own_state, n = "finished", 1
store.set(status="running")
data = {"status": "ABORTED"}
"""
    left_alone = """
if "failed" in line: pass
kind = "failed"
if event.kind == "round": pass
LIVE_STATES = ["pending", "running"]
status = JobStatus.FAILED
"""
    assert [word for _line, word in sorted(status_literals(flagged))] == ["RUNNING", "failed", "offline", "FAILED",
                                                                          "finished", "running", "ABORTED"]
    assert status_literals(left_alone) == []


@pytest.mark.parametrize("folder", ["node", "console", "cloud"])
def test_no_bare_status_literal_outside_the_enum_module(folder: str):
    """Statuses and states are written as `JobStatus.X` / `SiteState.X` (or parsed from text) everywhere but in
    `job_status.py`: a grep-proof check that the vocabulary is defined once."""
    offenders = [f"{path.relative_to(ROOT)}:{line}: {word!r}"
                 for path in sorted((ROOT / folder).rglob("*.py"))
                 if path != ENUM_MODULE and "proto" not in path.parts
                 for line, word in status_literals(path.read_text())]
    assert offenders == []
