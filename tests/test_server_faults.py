"""A real server daemon in this process, with faults injected: its threads log, fail the job and go on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.node import errors
from flctl.node.admin.admin_client import AdminClient
from flctl.node.config.kit import load_kit
from flctl.node.jobs.job_spec import load_job
from flctl.node.server.daemon import ServerDaemon
from flctl.node.server.store import JobRow

from .federation import Federation, make_federation
from .job_folders import IDLE, job_folder


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path, sites=1, name="faults")


@pytest.fixture
def daemon(fed: Federation) -> Iterator[ServerDaemon]:
    server = ServerDaemon(load_kit(fed.kit("localhost")), fed.root / "server-ws")
    try:
        yield server
    finally:
        server.stop()


def add_job(server: ServerDaemon, root: Path, name: str, signed: bool, at: float) -> str:
    """A job stored as submitted, its folder as the Admin service leaves it (without signature.json: unsigned)."""
    spec = load_job(job_folder(root, name, script=IDLE)).spec
    job_dir = server.ctx.jobs_dir() / name
    job_dir.mkdir(parents=True)
    if signed:
        (job_dir / "signature.json").write_text(json.dumps({"signer_cert_pem": "", "signature": ""}))
    server.ctx.store.add_job(JobRow(name, name, "SUBMITTED", "admin@hub.org", "hub", "project_admin", at, 0.0, 0.0,
                                    -1, 1, "fedavg", 1, ["site-1"], "", "", "sha", spec.model_dump(mode="json")))
    return name


def wait_for(server: ServerDaemon, check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, [(e.job_id, e.kind, e.message) for e in server.ctx.store.events()]
        server.ctx.store.wait_for_change(0.5)


def test_a_job_whose_start_raises_fails_with_the_reason_and_the_next_one_runs(daemon, tmp_path, monkeypatch):
    """The scheduler loop survives an exception of its own and one from starting a job; that job fails, saying why."""
    store = daemon.ctx.store
    store.touch_site("site-1", "org_1", time.time() + 3600, register=True)
    bad = add_job(daemon, tmp_path, "bad", signed=False, at=1.0)
    good = add_job(daemon, tmp_path, "good", signed=True, at=2.0)
    real = daemon.ctx.online_sites
    calls = []

    def flaky(since: float = 0.0) -> list[str]:
        calls.append(since)
        if len(calls) == 1:
            raise RuntimeError("injected: the first look at the sites fails")
        return real(since)

    monkeypatch.setattr(daemon.ctx, "online_sites", flaky)
    daemon.scheduler.start()
    daemon.scheduler.poke()

    wait_for(daemon, lambda: any(e.kind == "started" for e in store.events(0, good)))
    failed = store.get_job(bad)
    assert failed is not None and failed.status == "FAILED"
    assert failed.error.startswith("the server could not start the job: FileNotFoundError")
    assert "signature.json" in failed.error
    assert [e.kind for e in store.events(0, bad)][-1] == "failed"
    assert bad not in daemon.ctx.runner.running()


def test_a_submit_whose_storing_fails_stores_nothing(fed, daemon, tmp_path):
    """The job row and its event are one transaction: when the event cannot be stored, no job and no folder stay."""
    daemon.start()
    store = daemon.ctx.store
    store._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'injected'); END")
    with AdminClient.from_kit(fed.admin_kit) as admin:
        with pytest.raises(errors.NodeError, match=r"could not store the job .*nothing of it was kept"):
            admin.submit_job(job_folder(tmp_path, "unstored", script=IDLE))
        assert admin.list_jobs() == []
        assert list(daemon.ctx.jobs_dir().iterdir()) == []
        store._db.execute("DROP TRIGGER refuse")
        job_id = admin.submit_job(job_folder(tmp_path, "stored", script=IDLE))
        assert [j.id for j in admin.list_jobs()] == [job_id]


def test_a_job_process_request_the_server_cannot_handle_fails_that_job(daemon, tmp_path, monkeypatch):
    """A malformed request from a job process fails the job with the reason and ends the process; nothing hangs."""
    import sys

    from flctl.node.server import job_runner

    script = "import time; print('{\"kind\": \"task\", \"task_id\": \"t\"}', flush=True); time.sleep(120)"
    monkeypatch.setattr(job_runner, "JOB_PROCESS", [sys.executable, "-c", script])
    store = daemon.ctx.store
    job_id = add_job(daemon, tmp_path, "malformed", signed=True, at=1.0)
    job = store.get_job(job_id)
    assert job is not None
    daemon.ctx.runner.start(job, ["site-1"])

    wait_for(daemon, lambda: store.get_job(job_id).status == "FAILED")
    failed = store.get_job(job_id)
    assert failed.error.startswith("server job link: refused a message: task.task_kind: Field required")
    assert daemon.ctx.runner.running() == []


def test_stray_output_of_a_job_process_is_refused_logged_and_the_job_goes_on(daemon, tmp_path, monkeypatch, caplog):
    """A line on a job process's stdout that is no message is refused (logged with its link), kept in the job's log,
    and the job still ends as its process says."""
    import logging
    import sys

    from flctl.node.server import job_runner

    script = ("print('a native library talking', flush=True); "
              "print('{\"kind\": \"done\", \"status\": \"FINISHED\", \"error\": \"\"}', flush=True)")
    monkeypatch.setattr(job_runner, "JOB_PROCESS", [sys.executable, "-c", script])
    store = daemon.ctx.store
    job_id = add_job(daemon, tmp_path, "stray", signed=True, at=1.0)
    job = store.get_job(job_id)
    assert job is not None

    with caplog.at_level(logging.WARNING, logger="flctl.server"):
        daemon.ctx.runner.start(job, ["site-1"])
        wait_for(daemon, lambda: store.get_job(job_id).status == "FINISHED")

    lines = [line for _id, _site, _time, line in store.logs(job_id)]
    assert "a native library talking" in lines
    assert "server job link: refused a message: not a JSON object: 'a native library talking'" in lines
    assert f"job {job_id}: server job link: refused a message: not a JSON object" in caplog.text
    assert daemon.ctx.runner.running() == []
