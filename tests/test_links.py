"""The links between flctl's own processes: each message type round-trips; a malformed or unknown one is refused,
logged with its link, and never taken down an end."""

from __future__ import annotations

import io
import logging
import math
import multiprocessing
import queue
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flctl.node.jobs.job_spec import load_job
from flctl.node.process.links import Link, LinkError
from flctl.node.process.spare_process import SPARE_LINK, JobHandoff
from flctl.node.server import job_messages as server
from flctl.node.server.job_process import _read_inbox
from flctl.node.simulator import worker_messages as sim
from flctl.node.simulator.runtime import _Pool, _WorkerGone
from flctl.node.site.job_launch import SiteJob, read_script_group, write_script_group

from .job_folders import IDLE, job_folder

MESSAGES: list[tuple[Link[Any], Any]] = [
    (server.RUN_PLAN, server.RunPlan(job_id="j1", spec={"name": "x"}, sites=["a", "b"], min_sites=1,
                                     initial="/m/round-2.safetensors", start_round=3, state="/m/round-2.state")),
    (server.JOB_REQUESTS, server.PostTask(task_id="t1", task_kind="train", round=2, sites=["a"], payload="/t/t1",
                                          meta={"lr": 0.1}, timeout_s=30.0)),
    (server.JOB_REQUESTS, server.CancelTask(task_id="t1", sites=["b"])),
    (server.JOB_REQUESTS, server.ModelSaved(name="round-2")),
    (server.JOB_REQUESTS, server.RoundDone(round=2, metrics={"a": {"loss": 0.5}})),
    (server.JOB_REQUESTS, server.LogLine(line="round 2 began")),
    (server.JOB_REQUESTS, server.JobDone(status="FAILED", error="too few sites")),
    (server.JOB_ANSWERS, server.SiteResult(task_id="t1", site="a", data="AAEC", num_examples=5,
                                           metrics={"loss": 0.25}, meta={"k": [1, 2]})),
    (server.JOB_ANSWERS, server.SiteResult(task_id="t1", site="a", path="/r/a.safetensors")),
    (server.JOB_ANSWERS, server.SiteFailed(task_id="t1", site="b", reason="its script crashed")),
    (server.JOB_ANSWERS, server.SiteRejoined(site="b")),
    (server.JOB_ANSWERS, server.AbortJob(reason="aborted by admin@hub.org")),
    (sim.TO_WORKER, sim.SimTask(task_id=3, task_kind="train", round=1, meta={}, sites=["site-1", "site-3"], size=12)),
    (sim.TO_WORKER, sim.SimEnd()),
    (sim.FROM_WORKER, sim.SimResult(site="site-1", task_id=3, num_examples=7, metrics={"acc": 0.9}, meta={},
                                    size=12)),
    (sim.FROM_WORKER, sim.SimFailure(site="site-3", task_id=3, reason="the script exited (code 0)")),
    (sim.FROM_WORKER, sim.SimMetric(site="site-1", round=1, name="loss", value=0.3, step=None)),
    (sim.FROM_WORKER, sim.SimEnded()),
    (SPARE_LINK, JobHandoff(args=["/kit", "/jobs/j1", "j1"], output="/jobs/j1/job_process.log")),
]


@pytest.mark.parametrize(("link", "message"), MESSAGES, ids=lambda m: getattr(m, "kind", "") or type(m).__name__)
def test_every_message_of_every_link_round_trips(link: Link[Any], message: Any) -> None:
    """A message encoded as its line decodes to an equal message of the same type."""
    # Execute
    line = link.encode(message)

    # Assert
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = link.decode(line)
    assert type(decoded) is type(message) and decoded == message


@pytest.mark.parametrize(("line", "reason"), [
    ("not json at all", "not JSON"),
    ('{"kind": "reboot", "site": "a"}', "unknown kind 'reboot'"),
    ('{"site": "a"}', "no 'kind'"),
    ('{"kind": "failure", "site": 7}', "failure.site: Input should be a valid string"),
    ('{"kind": "rejoin", "site": "a", "extra": 1}', "rejoin.extra: Extra inputs are not permitted"),
    ('["abort"]', "Input should be an object"),
])
def test_a_malformed_or_unknown_message_is_refused_naming_its_link(line: str, reason: str) -> None:
    """`decode` raises LinkError with the link's name, what is wrong, and the start of the message."""
    # Execute
    with pytest.raises(LinkError) as refused:
        server.JOB_ANSWERS.decode(line)

    # Assert
    assert refused.value.link == "server job link"
    assert str(refused.value).startswith("server job link: refused a message: ")
    assert reason in str(refused.value)


def test_the_job_process_logs_and_refuses_what_it_cannot_read_and_keeps_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    """The job process's reader logs each refused line with the link, passes on the valid ones, then the abort."""
    # Prepare
    stream = io.StringIO('garbage\n{"kind": "reboot"}\n{"kind": "rejoin", "site": "a"}\n')
    inbox: queue.Queue[server.JobAnswer] = queue.Queue()

    # Execute
    with caplog.at_level(logging.WARNING, logger="flctl.server.job"):
        _read_inbox(stream, inbox)

    # Assert
    assert [inbox.get_nowait(), inbox.get_nowait()] == [server.SiteRejoined(site="a"),
                                                         server.AbortJob(reason="the server daemon went away")]
    refusals = [r.getMessage() for r in caplog.records]
    assert len(refusals) == 2 and all(r.startswith("server job link: refused a message: ") for r in refusals)
    assert "not JSON in 'garbage'" in refusals[0] and "unknown kind 'reboot'" in refusals[1]


def test_the_simulator_refuses_a_bad_frame_from_a_worker_and_reads_on(caplog: pytest.LogCaptureFixture) -> None:
    """The main process's reader of a worker pipe logs a refused frame and still delivers what follows."""
    # Prepare
    ours, theirs = multiprocessing.Pipe()
    pool = _Pool([ours], [])
    theirs.send_bytes(b'{"kind": "result", "site": "site-1"}')
    sim.send(theirs, sim.FROM_WORKER, sim.SimMetric(site="site-1", round=0, name="loss", value=1.0))
    sim.send(theirs, sim.FROM_WORKER, sim.SimResult(site="site-1", task_id=1, num_examples=1, size=3), b"abc")
    theirs.close()

    # Execute
    with caplog.at_level(logging.WARNING, logger="flctl.simulator"):
        pool.read(0)

    # Assert
    events = [pool.events.get_nowait() for _ in range(pool.events.qsize())]
    assert [type(message) for message, _ in events] == [sim.SimMetric, sim.SimResult, _WorkerGone]
    assert events[1][1] == b"abc"
    [refusal] = [r.getMessage() for r in caplog.records]
    assert refusal.startswith("simulator worker link: refused a message: result.task_id: Field required")


def test_params_that_do_not_match_their_announced_size_are_refused() -> None:
    """A result whose params frame is not the size its message announced is refused."""
    # Prepare
    ours, theirs = multiprocessing.Pipe()
    theirs.send_bytes(sim.FROM_WORKER.encode(sim.SimResult(site="s", task_id=1, num_examples=1, size=4)))
    theirs.send_bytes(b"abc")

    # Execute
    with pytest.raises(LinkError, match="announced 4 bytes of params, and 3 came"):
        sim.receive(ours, sim.FROM_WORKER)


def test_the_site_job_link_round_trips_and_refuses_bad_arguments(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The site job's arguments round-trip; a bad job id and a damaged script group file are refused, logged."""
    # Prepare
    job = SiteJob(tmp_path / "kit", tmp_path / "jobs" / "j1", "j1")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "script.pgid").write_text("0\n")
    write_script_group(tmp_path, 4242)

    # Execute
    with caplog.at_level(logging.WARNING):
        damaged = read_script_group(tmp_path / "bad", logging.getLogger("flctl.site"))

    # Assert
    assert SiteJob.from_argv(job.argv()) == job
    with pytest.raises(LinkError, match=r"site job link: refused a message: .*job id"):
        SiteJob.from_argv([str(tmp_path), str(tmp_path), "../x"])
    assert read_script_group(tmp_path, logging.getLogger("flctl.site")) == 4242
    assert damaged is None
    assert "site job link: refused a message: " in caplog.text


def test_a_real_job_process_refuses_garbage_on_its_stdin_and_still_ends_cleanly(tmp_path: Path) -> None:
    """The server job process logs garbage and an unknown message from the daemon, then obeys the abort after them."""
    # Prepare
    spec = load_job(job_folder(tmp_path, "links", script=IDLE)).spec.model_dump(mode="json")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    plan = server.RunPlan(job_id="links", spec=spec, sites=["site-1"], min_sites=1)
    (job_dir / "run.json").write_bytes(server.RUN_PLAN.encode(plan))
    said = b"this is no message\n" + b'{"kind": "reboot", "now": true}\n' + \
        server.JOB_ANSWERS.encode(server.AbortJob(reason="the test is over"))

    # Execute
    out = subprocess.run([sys.executable, "-m", "flctl.node.server.job_process", str(job_dir)], input=said,
                         capture_output=True, timeout=120, check=False)

    # Assert
    assert out.returncode == 0, out.stderr.decode()
    requests = [server.JOB_REQUESTS.decode(line) for line in out.stdout.splitlines()]
    assert requests[-1] == server.JobDone(status="ABORTED", error="the test is over")
    stderr = out.stderr.decode()
    assert "server job link: refused a message: not JSON in 'this is no message'" in stderr
    assert "server job link: refused a message: unknown kind 'reboot'" in stderr


def test_a_job_process_given_a_damaged_run_json_exits_saying_so(tmp_path: Path) -> None:
    """A run.json that does not validate is refused: the job process exits with code 2 and the reason."""
    # Prepare
    (tmp_path / "run.json").write_text('{"job_id": "j1", "sites": "site-1"}')

    # Execute
    out = subprocess.run([sys.executable, "-m", "flctl.node.server.job_process", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)

    # Assert
    assert out.returncode == 2 and out.stdout == ""
    assert "server job link (run.json): refused a message: " in out.stderr and "sites: " in out.stderr


def test_a_spare_handed_garbage_exits_naming_its_link() -> None:
    """A spare job process that cannot read its handoff exits (code 1), saying which link refused what."""
    # Prepare
    code = "from flctl.node.process import spare_process; print(spare_process.wait_for_job())"

    # Execute
    out = subprocess.run([sys.executable, "-c", code], input='{"args": "not a list"}\n', capture_output=True,
                         text=True, timeout=60, check=False)

    # Assert
    assert out.returncode == 1 and out.stdout == ""
    assert "spare job process link: refused a message: " in out.stderr and "args: " in out.stderr


@pytest.mark.parametrize(("link", "message"), [
    (server.JOB_ANSWERS, server.SiteResult(task_id="t1", site="a", metrics={"loss": math.nan, "acc": math.inf,
                                                                            "low": -math.inf})),
    (server.JOB_REQUESTS, server.RoundDone(round=0, metrics={"a": {"loss": math.nan}})),
    (sim.FROM_WORKER, sim.SimMetric(site="site-1", round=1, name="loss", value=math.nan, step=None)),
], ids=["site-result", "round-done", "sim-metric"])
def test_a_nan_or_infinite_metric_travels_as_itself(link: Link[Any], message: Any) -> None:
    """A diverged loss in a site's answer reaches the workflow: the union's adapter wrote NaN as null, which the
    other end refused as no number, and the answer was lost (the round timed out)."""
    decoded = link.decode(link.encode(message))
    assert type(decoded) is type(message)
    assert decoded.model_dump_json() == message.model_dump_json()  # NaN != NaN: compared as written
    assert b"NaN" in link.encode(message)
