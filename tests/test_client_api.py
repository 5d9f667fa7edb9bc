"""The Client API (`flctl.node.client.api`), driven in this process against a fake site job process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import flctl.client as fl
from flctl.node.client import api_wire as wire
from flctl.node.wire.tensors import decode, encode

ROOT = Path(__file__).resolve().parent.parent


class FakeSite:
    """The site end of the connection, spoken by hand."""

    def __init__(self, conn: Connection[Any, Any]) -> None:
        self.conn = conn

    def expect(self) -> tuple[wire.Message, bytes]:
        assert self.conn.poll(5), "the script sent nothing"
        message, size = wire.decode(self.conn.recv_bytes())
        payload = bytearray(size)
        wire.read_payload(self.conn, memoryview(payload))
        return message, bytes(payload)

    def quiet(self) -> bool:
        return not self.conn.poll(0.05)

    def give(self, task_id: int, params: dict[str, Any], round: int = 1, name: str = "train",
             meta: dict[str, Any] | None = None) -> None:
        wire.send(self.conn, wire.Assign(task_id, name, round, meta or {}), [encode(params)])

    def end(self) -> None:
        wire.send(self.conn, wire.End())


@pytest.fixture
def fresh_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Client API with no session, as in a script that just started."""
    monkeypatch.setattr(fl, "_process", fl._Process())


@pytest.fixture
def site(fresh_api: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    """An initialised Client API connected to a FakeSite (which has read its Hello)."""
    folder = tempfile.mkdtemp(prefix="flctl-test-")  # unix socket paths must be short
    address, authkey = os.path.join(folder, "api.sock"), os.urandom(16)
    listener = Listener(address, family="AF_UNIX", authkey=authkey)
    monkeypatch.setenv(wire.ADDRESS_ENV, address)
    monkeypatch.setenv(wire.AUTHKEY_ENV, authkey.hex())
    monkeypatch.setenv(wire.SITE_ENV, "site-1")
    monkeypatch.setenv(wire.JOB_ID_ENV, "job-42")
    accepted: list[Connection[Any, Any]] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()))
    thread.start()
    fl.init()
    thread.join(5)
    fake = FakeSite(accepted[0])
    assert fake.expect() == (wire.Hello(), b"")
    yield fake
    fake.conn.close()
    listener.close()
    shutil.rmtree(folder, ignore_errors=True)


def test_init_without_flctl_says_how_to_run_the_script(fresh_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run by hand (no FLCTL_API_* variables), init() says to go through flctl."""
    monkeypatch.delenv(wire.ADDRESS_ENV, raising=False)
    monkeypatch.delenv(wire.AUTHKEY_ENV, raising=False)

    with pytest.raises(RuntimeError, match=r"run this script through flctl \(flctl simulate / flctl job submit\)"):
        fl.init()


def test_calls_before_init_raise(fresh_api: None) -> None:
    """Every call but init() needs a connection first."""
    for call in (fl.running, fl.receive, fl.site_name, lambda: fl.send(fl.Model()), lambda: fl.log("x", 1.0)):
        with pytest.raises(RuntimeError, match=r"call fl.init\(\) first"):
            call()


def test_import_loads_nothing_heavy() -> None:
    """`import flctl.node.client.api` loads neither torch nor grpc (nor numpy or safetensors, until a task arrives)."""
    code = ("import sys, flctl.node.client.api; "
            "print([m for m in ('torch', 'grpc', 'numpy', 'safetensors') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30)

    assert out.stdout.strip() == "[]"


def test_running_then_receive_give_the_task(site: FakeSite) -> None:
    """running() fetches the task; receive() returns it, the same one until it is answered."""
    site.give(1, {"w": np.array([1.0, 2.0], dtype=np.float32)}, round=3, meta={"lr": 0.1})

    assert fl.running() is True
    assert fl.running() is True
    model = fl.receive()
    again = fl.receive()

    assert model is not None and again is model
    assert model.params["w"].tolist() == [1.0, 2.0] and model.params["w"].dtype == np.float32
    assert (model.round, model.meta, model.task) == (3, {"lr": 0.1}, "train")
    assert fl.current_round() == 3
    assert site.expect() == (wire.Ask(), b"")
    assert site.quiet(), "the task was asked for only once"


def test_send_answers_the_task(site: FakeSite) -> None:
    """send() carries params, num_examples, metrics and meta; numpy numbers are accepted."""
    site.give(5, {"w": np.zeros(2)})
    model = fl.receive()
    assert model is not None
    site.expect()  # Ask

    numpy_metrics: dict[str, Any] = {"loss": np.float32(0.5), "n": 3}
    numpy_count: Any = np.int64(10)
    fl.send(fl.Model(params={"w": model.params["w"] + 1, "b": 2.5}, metrics=numpy_metrics, num_examples=numpy_count,
                     meta={"note": "ok"}))

    result, payload = site.expect()
    assert result == wire.Result(task_id=5, num_examples=10, metrics={"loss": 0.5, "n": 3.0}, meta={"note": "ok"})
    params = decode(payload)
    assert params["w"].tolist() == [1.0, 1.0]
    assert params["b"].tolist() in (2.5, [2.5])


def test_receive_without_running_asks_itself(site: FakeSite) -> None:
    """receive() alone asks for the next task after each send."""
    for task_id in (1, 2):
        site.give(task_id, {"w": np.array([task_id])}, round=task_id)
        model = fl.receive()
        assert model is not None and model.round == task_id
        assert site.expect()[0] == wire.Ask()
        fl.send(fl.Model(params=model.params, num_examples=1))
        assert site.expect()[0] == wire.Result(task_id=task_id, num_examples=1)


def test_send_twice_or_before_a_task_raises(site: FakeSite) -> None:
    """One send per task: before receive() or a second time, send() raises."""
    with pytest.raises(RuntimeError, match=r"call fl.receive\(\) first"):
        fl.send(fl.Model())
    site.give(1, {})
    fl.receive()
    fl.send(fl.Model())

    with pytest.raises(RuntimeError, match="no task to answer"):
        fl.send(fl.Model())


@pytest.mark.parametrize(("model", "error", "match"), [
    (fl.Model(num_examples=-1), ValueError, "num_examples must be a whole number >= 0"),
    (fl.Model(num_examples=2.5), ValueError, "num_examples"),  # type: ignore[arg-type]
    (fl.Model(metrics={"loss": "low"}), TypeError, "metric 'loss' must be a number"),  # type: ignore[dict-item]
    (fl.Model(meta={"when": object()}), TypeError, "only JSON values can travel"),
    (fl.Model(params={"w": "text"}), ValueError, "parameter 'w'"),
])
def test_send_refuses_bad_results(site: FakeSite, model: fl.Model, error: type[Exception], match: str) -> None:
    """A result that cannot travel raises a clear error and the task stays open."""
    site.give(1, {})
    fl.receive()

    with pytest.raises(error, match=match):
        fl.send(model)
    fl.send(fl.Model())  # still answerable
    site.expect()
    assert site.expect()[0] == wire.Result(task_id=1, num_examples=0)


def test_end_stops_the_loop(site: FakeSite) -> None:
    """Once the site says the job ended: running() is False, receive() None, send() raises."""
    site.end()

    assert fl.running() is False
    assert fl.receive() is None
    with pytest.raises(RuntimeError, match="the job has ended"):
        fl.send(fl.Model())


def test_receive_timeout_keeps_the_request(site: FakeSite) -> None:
    """receive(timeout) raises TimeoutError; the next call gets the task without asking again."""
    with pytest.raises(TimeoutError):
        fl.receive(timeout=0.05)
    site.give(1, {"w": np.ones(1)})

    model = fl.receive(timeout=5)

    assert model is not None
    assert site.expect()[0] == wire.Ask()
    assert site.quiet()


def test_log_is_forwarded_at_once(site: FakeSite) -> None:
    """log() sends the metric now, with or without a step."""
    fl.log("loss", np.float64(0.25), step=3)
    fl.log("acc", 1)

    assert site.expect()[0] == wire.Log(name="loss", value=0.25, step=3)
    assert site.expect()[0] == wire.Log(name="acc", value=1.0, step=None)


@pytest.mark.parametrize(("args", "error"), [
    (("", 1.0), ValueError), (("loss", "high"), TypeError), (("loss", 1.0, 1.5), TypeError),
])
def test_log_refuses_bad_values(site: FakeSite, args: tuple[Any, ...], error: type[Exception]) -> None:
    """A metric needs a name, a number and an integer step (or none)."""
    with pytest.raises(error):
        fl.log(*args)


def test_identity_comes_from_flctl(site: FakeSite) -> None:
    """site_name() and job_id() are what flctl set; FLARE's names are aliases."""
    assert (fl.site_name(), fl.job_id(), fl.current_round()) == ("site-1", "job-42", 0)
    assert fl.get_site_name is fl.site_name and fl.get_job_id is fl.job_id and fl.is_running is fl.running


def test_lost_site_is_a_connection_error(site: FakeSite) -> None:
    """If the site job process goes away, running() raises instead of ending the loop quietly."""
    site.conn.close()

    with pytest.raises(ConnectionError, match="lost the connection"):
        fl.running()


def test_model_defaults_are_independent() -> None:
    """Model() has empty, unshared defaults and the task name 'train'."""
    first, second = fl.Model(), fl.Model()
    first.params["w"] = 1

    assert second.params == {} and second.metrics == {} and second.meta == {}
    assert (second.num_examples, second.round, second.task) == (0, 0, "train")
    assert json.dumps(second.meta) == "{}"


def test_importing_the_client_api_loads_nothing_a_confined_script_may_not_read():
    """A job's script, confined to flctl/ and flctl/node, imports flctl.client: nothing of provisioner, cloud or
    console may come with it (nor numpy, which the first task loads)."""
    import json
    import subprocess
    import sys

    # Prepare / Execute
    out = subprocess.run([sys.executable, "-c", "import json, sys, flctl.client; print(json.dumps(list(sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=60)
    # Assert
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m.startswith(("flctl.provisioner", "flctl.cloud", "flctl.console"))]
    assert "numpy" not in loaded
