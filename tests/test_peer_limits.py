"""Bounded resources per peer on a real server daemon (`flctl node start`, caps set low in its local/resources.yml):
an admin's streams past its cap are refused with RESOURCE_EXHAUSTED while its calls still answer and another admin
is unaffected; a connection that never finishes its TLS handshake is closed at the deadline; a site flooding a
job's log and metrics is cut to its limits, with one note."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flctl.node.admin.admin_client import AdminClient
from flctl.node.config.kit import load_kit
from flctl.node.security.tls import channel
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc

from .federation import ADMIN, Federation, make_federation
from .raw_site import RawSite

ROOT = Path(__file__).resolve().parent.parent
OTHER = ("other@hub.org", "hub", "project_admin")
WAIT_S = 30.0
LIMITS = """
max_streams_per_peer: 3
max_calls_per_peer: 6
handshake_timeout_s: 1
max_log_line_chars: 100
max_log_lines_per_minute: 50
max_metrics_per_minute: 20
"""


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = make_federation(tmp_path_factory.mktemp("limits"), sites=1, admins=[ADMIN, OTHER])
    resources = federation.kit("localhost") / "local" / "resources.yml"
    resources.write_text(resources.read_text() + LIMITS)
    try:
        federation.start("localhost")
        federation.wait_online([])
        yield federation
    finally:
        federation.stop_all()


def admin_stub(fed: Federation, name: str) -> tuple[grpc.Channel, Any]:
    chan = channel(load_kit(fed.kit(name)))
    return chan, pb_grpc.AdminStub(chan)


def ended(calls: list[Any], count: int) -> list[Any]:
    """Wait until `count` of `calls` have ended; those calls."""
    done: list[Any] = []
    changed = threading.Condition()

    def note(call: Any) -> None:
        with changed:
            done.append(call)
            changed.notify_all()

    for call in calls:
        call.add_done_callback(note)
    with changed:
        assert changed.wait_for(lambda: len(done) >= count, WAIT_S), f"only {len(done)} of {count} calls ended"
    return done


def code_of(stub: Any) -> grpc.StatusCode:
    """The status a JobLogs stream of a job that does not exist ends with (NOT_FOUND once it is let in)."""
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.JobLogs(pb.LogsRequest(job_id="no-such-job"), timeout=WAIT_S))
    return caught.value.code()  # type: ignore[no-any-return]


def test_an_admins_streams_past_its_cap_are_refused_while_its_calls_answer(fed: Federation):
    """admin@hub.org watches events on 5 streams with a cap of 3: 2 are refused with RESOURCE_EXHAUSTED and the cap's
    key; `flctl job ls` as that admin still answers, and another admin's streams are let in."""
    chan, stub = admin_stub(fed, ADMIN[0])
    other_chan, other = admin_stub(fed, OTHER[0])
    try:
        # Execute
        watches = [stub.WatchEvents(pb.WatchRequest(), timeout=WAIT_S * 4) for _ in range(5)]
        refused = ended(watches, 2)
        # Assert
        assert [call.code() for call in refused] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
        assert refused[0].details().startswith(
            f"too many concurrent streams from {ADMIN[0]} (cap 3, local/resources.yml max_streams_per_peer)")
        assert all(call.is_active() for call in watches if call not in refused)
        listed = fed.flctl("job", "ls")
        assert listed.returncode == 0, listed.stderr
        assert code_of(stub) == grpc.StatusCode.RESOURCE_EXHAUSTED
        refused_logs = fed.flctl("job", "logs", "no-such-job")
        assert refused_logs.returncode == 1 and "Traceback" not in refused_logs.stderr
        assert f"refused the call: too many concurrent streams from {ADMIN[0]} (cap 3" in refused_logs.stderr
        assert code_of(other) == grpc.StatusCode.NOT_FOUND, "another admin is not held to the first one's cap"
        for call in watches:
            call.cancel()
        deadline = time.monotonic() + WAIT_S
        while code_of(stub) != grpc.StatusCode.NOT_FOUND:  # the cancelled streams' places come back
            assert time.monotonic() < deadline, "the cancelled streams still count against admin@hub.org"
            time.sleep(0.2)
    finally:
        chan.close()
        other_chan.close()


@pytest.mark.parametrize("dribble", [False, True], ids=["silent", "dribbling"])
def test_a_connection_that_never_finishes_its_handshake_is_closed_at_the_deadline(fed: Federation, dribble: bool):
    """A client that opens TCP and sends nothing (or a byte at a time of a TLS record that never ends) is closed by
    the server at its 1 s handshake deadline, and admin calls still answer meanwhile and after."""
    with socket.create_connection(("127.0.0.1", fed.port), timeout=WAIT_S) as sock:
        # Execute
        closed = False
        started = time.monotonic()
        record = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc" + b"\x00" * 64  # a ClientHello of 512 bytes, begun
        sent = 0
        while time.monotonic() - started < WAIT_S:
            if dribble and sent < len(record):
                try:
                    sock.sendall(record[sent:sent + 1])
                except OSError:  # reset: closed
                    closed = True
                    break
                sent += 1
            sock.settimeout(0.2 if dribble else WAIT_S)
            try:
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        # Assert
        assert closed, f"the server kept a connection that sent {sent} bytes open for {WAIT_S:g} s"
    listed = fed.flctl("job", "ls")
    assert listed.returncode == 0, listed.stderr


def flood_job(root: Path) -> Path:
    job = root / "flood-job"
    shutil.copytree(ROOT / "playbooks" / "jobs" / "hello-numpy" / "app", job / "app")
    (job / "job.yml").write_text("api_version: 1\nname: flood\nworkflow: {type: fedavg, args: {rounds: 1, "
                                 "round_timeout_s: 600}}\nsites: [site-1]\nmin_sites: 1\napp:\n"
                                 "  command: [python, train.py]\n")
    return job


def test_a_site_flooding_a_jobs_log_and_metrics_is_cut_with_one_note(fed: Federation, tmp_path: Path):
    """site-1 sends 130 log lines (one of 500 characters) and 45 metric values (one named with 300) within a minute
    against caps of 50 and 20: the job keeps 50 lines and 20 values (the long line and name cut, with a marker),
    its log holds one note for each flood, and the server still answers."""
    with RawSite(fed.kit("site-1")) as site, AdminClient.from_kit(fed.admin_kit) as admin:
        fed.wait_online(["site-1"])
        job_id = admin.submit_job(flood_job(tmp_path))
        try:
            site.next_task(job_id)  # the job runs on site-1
            now = time.time()
            lines = [pb.LogLine(time=now, line="x" * 500)] + [pb.LogLine(time=now, line=f"line {i}")
                                                               for i in range(99)]
            # Execute
            site.stub.Report(pb.ReportRequest(job_id=job_id, logs=lines, metrics=[
                pb.Metric(name="loss" if i else "m" * 300, value=float(i), step=i, has_step=True, time=now)
                for i in range(30)]), timeout=WAIT_S)
            site.stub.Report(pb.ReportRequest(job_id=job_id, logs=lines[:30], metrics=[
                pb.Metric(name="acc", value=1.0, time=now) for _ in range(15)]), timeout=WAIT_S)
            # Assert
            logs = list(admin.logs(job_id))
            own = [entry.line for entry in logs if entry.site == "site-1"]
            notes = [entry.line for entry in logs if entry.site == "server" and "sent more than" in entry.line]
            assert len(own) == 50
            assert own[0] == "x" * 100 + " [... 400 more characters cut (max_log_line_chars)]"
            assert notes == ["site-1 sent more than 50 log lines a minute; the rest of this minute was dropped "
                             "(the server's local/resources.yml max_log_lines_per_minute)",
                             "site-1 sent more than 20 metric values a minute; the rest of this minute was dropped "
                             "(the server's local/resources.yml max_metrics_per_minute)"]
            database = fed.kit("localhost") / "workspace" / "server.db"
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                names = [name for (name,) in db.execute(
                    "SELECT name FROM metrics WHERE job_id = ? AND site = 'site-1' ORDER BY rowid", (job_id,))]
            assert len(names) == 20 and names[0] == "m" * 100 + " [... 200 more characters cut (max_log_line_chars)]"
            assert fed.flctl("job", "ls").returncode == 0
        finally:
            admin.abort_job(job_id)


def test_a_sites_control_sequences_reach_the_admins_terminal_as_escapes(fed: Federation, tmp_path: Path):
    """site-1 sends a log line carrying an OSC 52 clipboard write, a clear-screen, a C1 CSI and a newline forging
    another site's line, and a metric named with a hide-text sequence: `flctl job logs` prints every control
    character as its escape and the forged line as an indented continuation, `flctl job metrics` and `flctl job
    show` print the name the same way, and `--json` keeps the exact strings (JSON escapes them)."""
    attack = "boom\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b31m\n12:00:00 [site-2] forged"
    shown = "boom\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\\x9b31m"
    with RawSite(fed.kit("site-1")) as site, AdminClient.from_kit(fed.admin_kit) as admin:
        fed.wait_online(["site-1"])
        job_id = admin.submit_job(flood_job(tmp_path))
        try:
            site.next_task(job_id)
            now = time.time()
            site.stub.Report(pb.ReportRequest(job_id=job_id, logs=[pb.LogLine(time=now, line=attack)], metrics=[
                pb.Metric(name="loss\x1b[8m", value=0.5, step=0, has_step=True, time=now)]), timeout=WAIT_S)
            # Execute
            logs = fed.flctl("job", "logs", job_id, "--site", "site-1")
            exact = fed.flctl("job", "logs", job_id, "--site", "site-1", "--json")
            metrics = fed.flctl("job", "metrics", job_id)
            shown_job = fed.flctl("job", "show", job_id)
            # Assert
            assert logs.returncode == exact.returncode == metrics.returncode == shown_job.returncode == 0
            first, forged = logs.stdout.splitlines()[-2:]
            assert first.endswith(f"[site-1] {shown}")
            assert forged == " " * first.index(shown) + "12:00:00 [site-2] forged"  # under the text, not a line
            assert [json.loads(line)["line"] for line in exact.stdout.splitlines()][-1] == attack
            assert "loss\\x1b[8m" in metrics.stdout and "loss\\x1b[8m" in shown_job.stdout
            for out in (logs.stdout, metrics.stdout, shown_job.stdout):
                assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out
        finally:
            admin.abort_job(job_id)
