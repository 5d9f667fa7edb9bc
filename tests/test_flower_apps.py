"""Flower apps inside flctl (issue 32): the Fleet API relay's encoding (byte for byte, only Fleet paths), the
site's local Fleet endpoint over real HTTP, what `flwr run` prints read into rounds, a Flower app folder made a
job; and, with Flower's venv, a quickstart-numpy style app run on a real mTLS federation whose final model equals
the same app's on Flower's Simulation Engine, bit for bit."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from flctl.node.client import api_wire as wire
from flctl.node.errors import JobError
from flctl.node.flower import fleet_calls as fc
from flctl.node.flower.flower_job import as_job
from flctl.node.flower.flower_python import FlowerMissing, flower_python
from flctl.node.flower.run_log import RunLog
from flctl.node.flower.supernode_relay import LocalFleet
from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.tasks import Task, TaskKind
from flctl.node.site.filters import make_filter
from flctl.node.site.filters.base import FilterError
from flctl.node.site.filters.pipeline import FilterPipeline
from flctl.node.wire import tensors
from flctl.node.workflows.flower import toml_value

from .federation import make_federation

APP = {
    "pyproject.toml": """
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "quickstart-numpy"
        version = "1.0.0"
        dependencies = ["flwr[simulation]>=1.42.0", "numpy>=2.0"]

        [tool.hatch.build.targets.wheel]
        packages = ["."]

        [tool.flwr.app]
        publisher = "flctl-tests"

        [tool.flwr.app.components]
        serverapp = "qsnp.server_app:app"
        clientapp = "qsnp.client_app:app"

        [tool.flwr.app.config]
        num-server-rounds = 2
        local-steps = 4
        lr = 0.1
        """,
    "qsnp/__init__.py": "",
    "qsnp/client_app.py": """
        import numpy as np
        from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
        from flwr.clientapp import ClientApp

        app = ClientApp()


        @app.train()
        def train(msg: Message, context: Context) -> Message:
            w, b = msg.content["arrays"].to_numpy_ndarrays()
            rng = np.random.default_rng(100 + int(context.node_config["partition-id"]))
            x = rng.standard_normal((64, 3)).astype(np.float32)
            y = x @ np.array([2.0, -1.0, 0.5], dtype=np.float32) + np.float32(0.5)
            for _ in range(int(context.run_config["local-steps"])):
                err = x @ w + b - y
                w = w - np.float32(context.run_config["lr"]) * (x.T @ err / len(y)).astype(np.float32)
                b = b - np.float32(context.run_config["lr"]) * np.float32(err.mean())
            loss = float(np.mean((x @ w + b - y) ** 2))
            reply = RecordDict({"arrays": ArrayRecord([w.astype(np.float32), np.asarray(b, np.float32).reshape(1)]),
                                "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)})})
            return Message(content=reply, reply_to=msg)
        """,
    "qsnp/server_app.py": """
        import os

        import numpy as np
        from flwr.app import ArrayRecord, Context
        from flwr.serverapp import Grid, ServerApp
        from flwr.serverapp.strategy import FedAvg

        app = ServerApp()


        @app.main()
        def main(grid: Grid, context: Context) -> None:
            init = ArrayRecord([np.zeros(3, dtype=np.float32), np.zeros(1, dtype=np.float32)])
            result = FedAvg(fraction_train=1.0, fraction_evaluate=0.0).start(
                grid=grid, initial_arrays=init, num_rounds=int(context.run_config["num-server-rounds"]))
            np.savez(os.path.join(os.environ["FLCTL_FLOWER_OUTPUT"], "final.npz"), *result.arrays.to_numpy_ndarrays())
        """,
}


def write_app(folder: Path) -> Path:
    for name, text in APP.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


# ------------------------------------------------------------------ the relay's encoding
def test_calls_travel_byte_for_byte_with_only_the_headers_worth_replaying():
    """A batch of calls (one with an empty body) comes back from params + meta exactly, hop headers dropped."""
    # Prepare
    calls = [fc.FleetCall(0, "/v1/fleet/pull-messages", bytes(range(256)) * 3,
                          {"Content-Type": "application/protobuf", "Host": "x", "Accept": "application/protobuf"}),
             fc.FleetCall(1, "/v1/fleet/send-node-heartbeat", b"", {"flwr-node-signature": "s"})]
    # Execute
    params, meta = fc.encode_calls(calls)
    back = fc.decode_calls(tensors.views(tensors.encode(params)), json.loads(json.dumps(meta)))
    # Assert
    assert [(c.id, c.path, c.body) for c in back] == [(c.id, c.path, c.body) for c in calls]
    assert back[0].headers == {"content-type": "application/protobuf", "accept": "application/protobuf"}
    assert back[1].headers == {"flwr-node-signature": "s"}


def test_replies_travel_byte_for_byte():
    """Replies (status, content type, body) come back exactly."""
    # Prepare
    replies = [fc.FleetReply(3, 200, b"\x00\x01proto"), fc.FleetReply(4, 500, b"", "text/plain")]
    # Execute
    params, meta = fc.encode_replies(replies)
    back = fc.decode_replies(tensors.views(tensors.encode(params)), meta)
    # Assert
    assert back == replies


@pytest.mark.parametrize("path", ["/v1/control/start-run", "/v1/runtime/pull-task-input", "/v1/fleet/../control/x",
                                  "http://elsewhere/v1/fleet/pull-messages"])
def test_a_site_cannot_reach_more_of_the_superlink_than_the_fleet_api(path):
    """A call naming a Control, ServerAppIo or other path is refused, naming it."""
    # Prepare
    params, meta = fc.encode_calls([fc.FleetCall(0, path, b"x")])
    # Execute / Assert
    with pytest.raises(fc.FleetCallError, match="not a Fleet API path"):
        fc.decode_calls(params, meta)


def test_a_body_that_is_not_bytes_is_refused():
    """A call whose body is a float tensor, not an uint8 vector, is refused naming it."""
    # Prepare
    meta = {"calls": [{"id": 0, "path": "/v1/fleet/get-run", "headers": {}}]}
    # Execute / Assert
    with pytest.raises(fc.FleetCallError, match="c0 is not a byte string"):
        fc.decode_calls({"c0": np.zeros(2, np.float32)}, meta)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _node_request(node_id: int, extra: bytes = b"") -> bytes:
    """A Fleet request whose field 1 is `Node {node_id}` (PullMessagesRequest and its kind), as protobuf writes it."""
    node = b"\x08" + _varint(node_id)
    return b"\x0a" + _varint(len(node)) + node + extra


def test_a_site_speaks_only_for_the_flower_nodes_the_superlink_gave_it():
    """The node id a RegisterNode reply gives a site is that site's: its later calls naming it pass, another site's
    calls naming it are refused, as are ids never given and a second site handed an id the first holds."""
    # Prepare
    from flctl.node.flower.node_binding import NodeBinding

    binding = NodeBinding()
    register = fc.FleetCall(0, "/v1/fleet/register-node", b"\x0a\x03key")
    big = 2**63 + 12345  # Flower's node ids use all 64 bits
    pull = fc.FleetCall(1, "/v1/fleet/pull-messages", _node_request(big, b"\x12\x02id"))
    # Execute
    given = binding.check_reply("site-1", register, fc.FleetReply(0, 200, b"\x08" + _varint(big)))
    mine = binding.check_call("site-1", pull)
    theirs = binding.check_call("site-2", pull)
    unknown = binding.check_call("site-1", fc.FleetCall(2, "/v1/fleet/get-run", _node_request(7)))
    unregister = binding.check_call("site-1", fc.FleetCall(3, "/v1/fleet/unregister-node", b"\x08" + _varint(big)))
    stolen = binding.check_reply("site-2", register, fc.FleetReply(0, 200, b"\x08" + _varint(big)))
    # Assert
    assert (given, mine, unregister) == ("", "", "")
    assert theirs == f"pull-messages names Flower node {big}, which is not site-2's but site-1's"
    assert unknown == "get-run names Flower node 7, which is not site-1's"
    assert stolen == f"Flower node {big} is site-1's, not site-2's"


def test_a_fleet_method_flctl_does_not_know_or_a_malformed_request_is_refused():
    """Fail closed: a method outside flwr 1.42's Fleet API, or bytes that are not a protobuf message, are refused."""
    # Prepare
    from flctl.node.flower.node_binding import NodeBinding

    binding = NodeBinding()
    # Execute / Assert
    assert "does not relay the Fleet API method 'new-thing'" in binding.check_call(
        "site-1", fc.FleetCall(0, "/v1/fleet/new-thing", b""))
    assert "a malformed pull-messages request" in binding.check_call(
        "site-1", fc.FleetCall(1, "/v1/fleet/pull-messages", b"\x0a\x09\x08"))


# ------------------------------------------------------------------ the site's endpoint
def _post(port: int, path: str, body: bytes, out: dict[str, object]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers={"content-type": "application/protobuf"})
    response = conn.getresponse()
    out["status"], out["body"], out["type"] = response.status, response.read(), response.getheader("content-type")
    conn.close()


def test_the_local_fleet_endpoint_hands_a_call_over_and_answers_with_its_reply():
    """A real HTTP POST to the site's endpoint waits as a call; the reply delivered for it is what the poster gets."""
    # Prepare
    fleet = LocalFleet()
    fleet.start()
    got: dict[str, object] = {}
    poster = threading.Thread(target=_post, args=(fleet.port, "/v1/fleet/pull-messages", b"request", got))
    try:
        # Execute
        poster.start()
        calls = fleet.take(10.0)
        fleet.deliver([fc.FleetReply(calls[0].id, 200, b"reply bytes")])
        poster.join(10)
    finally:
        fleet.close()
    # Assert
    assert [(c.path, c.body, c.headers["content-type"]) for c in calls] == [
        ("/v1/fleet/pull-messages", b"request", "application/protobuf")]
    assert got == {"status": 200, "body": b"reply bytes", "type": "application/protobuf"}


def test_the_local_fleet_endpoint_answers_other_paths_itself_and_waits_out_a_quiet_supernode():
    """A POST outside the Fleet API gets 404 there and never travels; with no call, take returns none."""
    # Prepare
    fleet = LocalFleet()
    fleet.start()
    got: dict[str, object] = {}
    try:
        # Execute
        _post(fleet.port, "/v1/control/start-run", b"x", got)
        calls = fleet.take(0.2)
    finally:
        fleet.close()
    # Assert
    assert got["status"] == 404
    assert calls == []


# ------------------------------------------------------------------ flwr run's output, job and privacy rules
LINES = ["\x1b[92mINFO \x1b[0m:      Successfully started run 42", "INFO :      [ROUND 1/2]",
         "INFO :      └──> Aggregated MetricRecord: {'train_loss': 1.5, 'num': 2}", "INFO :      [ROUND 2/2]",
         "INFO :      └──> Aggregated MetricRecord: {'train_loss': 0.25}",
         "INFO :      Strategy execution finished in 3.2s"]


def test_flwr_runs_output_becomes_rounds_with_their_aggregated_metrics():
    """Each `[ROUND n/N]` closes the previous round with its aggregated metrics; the run id is kept."""
    # Prepare
    log = RunLog()
    # Execute
    shown = [log.feed(line) for line in LINES]
    log.end()
    # Assert
    assert shown[0] == "INFO :      Successfully started run 42"
    assert log.run_id == "42" and log.rounds_total == 2
    assert log.rounds() == [(0, {"train_loss": 1.5, "num": 2.0}), (1, {"train_loss": 0.25})]
    assert log.errors == []


def test_a_serverapp_that_raises_fails_the_run_with_its_exception():
    """What flwr 1.42 prints for a ServerApp that raises (flwr run still exits 0) is kept as the run's error, the
    exception's own line included; an ordinary line naming an error is not."""
    # Prepare
    log = RunLog()
    lines = ["\x1b[91mERROR \x1b[0m:     ServerApp raised an exception", "Traceback (most recent call last):",
             '  File "server_app.py", line 9, in main', "ValueError: this ServerApp is broken on purpose",
             "ERROR :     Exit Code: 201"]
    # Execute
    clean = RunLog()
    clean.feed("ValueError: a line that is no traceback's")
    for line in lines:
        log.feed(line)
    # Assert
    assert log.errors == ["ERROR :     ServerApp raised an exception", "Traceback (most recent call last):",
                          "ValueError: this ServerApp is broken on purpose"]
    assert clean.errors == []


def test_run_config_values_are_written_as_toml():
    """Strings quoted, booleans lower-case, numbers as they are (flwr run --run-config k=v)."""
    # Execute / Assert
    assert [toml_value(v) for v in ("a b", True, 3, 0.5)] == ['"a b"', "true", "3", "0.5"]


def test_a_flower_app_folder_becomes_a_flower_job(tmp_path):
    """`flctl job submit APP` of a Flower app folder: a job named after the app, its app/ the folder, run by the
    flower workflow at the server and the SuperNode relay at each site."""
    # Prepare
    app = write_app(tmp_path / "my app")
    # Execute
    job = as_job(app, tmp_path / "job")
    # Assert
    assert job is not None
    loaded = load_job(job)
    assert (loaded.spec.name, loaded.spec.workflow.type) == ("quickstart-numpy", "flower")
    assert loaded.args.rounds == 2  # type: ignore[attr-defined]  # the app's num-server-rounds, for flctl's progress
    assert loaded.spec.app.command == ["python", "-m", "flctl.node.flower.supernode_relay"]
    assert (job / "app" / "qsnp" / "server_app.py").read_text() == (app / "qsnp" / "server_app.py").read_text()


def test_a_folder_that_is_no_flower_app_is_left_alone_and_half_an_app_is_refused(tmp_path):
    """A job folder (job.yml) or a pyproject without [tool.flwr] is not wrapped; one naming no ClientApp is refused
    naming the file and the field."""
    # Prepare
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    half = tmp_path / "half"
    half.mkdir()
    (half / "pyproject.toml").write_text("[tool.flwr.app.components]\nserverapp = 'a:b'\n")
    # Execute / Assert
    assert as_job(plain, tmp_path / "j1") is None
    assert as_job(Path(__file__).resolve().parent.parent / "playbooks/jobs/flower-quickstart-numpy",
                  tmp_path / "j2") is None
    with pytest.raises(JobError, match=r"pyproject.toml.*tool.flwr.app.components.*names no clientapp"):
        as_job(half, tmp_path / "j3")


def test_submitting_half_a_flower_app_exits_2_naming_the_file_and_field(flctl, local_kits, tmp_path, monkeypatch):
    """`flctl job submit APP` of a Flower app naming no ClientApp is refused before anything is sent: exit 2, one
    line naming pyproject.toml and the field."""
    # Prepare
    app = tmp_path / "half"
    app.mkdir()
    (app / "pyproject.toml").write_text("[tool.flwr.app.components]\nserverapp = 'qsnp.server_app:app'\n")
    admin = next(p for p in local_kits.prod_dir.iterdir() if "@" in p.name)
    monkeypatch.setenv("FLCTL_KIT", str(admin))
    # Execute
    result = flctl("job", "submit", app)
    # Assert
    assert result.code == 2
    assert f"{app / 'pyproject.toml'}: tool.flwr.app.components: names no clientapp" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_site_with_privacy_filters_refuses_flower_messages_and_one_without_passes_them_untouched():
    """Filters cannot act on opaque Flower messages: a scope with any refuses them; none passes the bytes as they
    are, both ways."""
    # Prepare
    task = Task(TaskKind.FLOWER_FLEET, 0, {}, {})
    data = tensors.encode({"c0": np.frombuffer(b"proto", np.uint8)})
    answer = wire.Result(task_id=1, num_examples=0, metrics={}, meta={})
    filtered = FilterPipeline("job-1", "private", (), (make_filter("exclude_vars", {"exclude_vars": ["x"]}),))
    # Execute
    _task, given = FilterPipeline("job-1", "public").task_in(task, data, "site-1")
    _answer, sent = FilterPipeline("job-1", "public").result_out(task, answer, data, "site-1")
    # Assert
    assert given is data and sent is data
    with pytest.raises(FilterError, match="privacy scope 'private' has filters"):
        filtered.task_in(task, data, "site-1")
    with pytest.raises(FilterError, match="privacy scope 'private' has filters"):
        filtered.result_out(task, answer, data, "site-1")


def test_without_flower_the_error_says_how_to_get_it(tmp_path):
    """FLCTL_FLOWER_PYTHON naming no file is refused naming it; the setup command is given otherwise."""
    # Execute / Assert
    with pytest.raises(FlowerMissing, match="FLCTL_FLOWER_PYTHON=/nowhere/python is not a file"):
        flower_python({"FLCTL_FLOWER_PYTHON": "/nowhere/python"})


def test_the_flower_processes_at_the_server_are_confined_as_job_code(tmp_path, monkeypatch):
    """Under job_isolation required, Flower's server processes (the ServerApp's among them) start under Landlock (or
    another user): they write the job's flower/ folder, cannot read the server's key beside it, and get none of the
    server's environment; `off` leaves them as they are."""
    # Prepare
    from flctl.node.flower.server_confinement import confinement
    from flctl.node.site import sandbox

    if sandbox.available().kind != "landlock":
        pytest.skip("needs Landlock on this machine")
    work = tmp_path / "jobs" / "j1" / "flower"
    work.mkdir(parents=True)
    key = tmp_path / "startup" / "server.key"
    key.parent.mkdir()
    key.write_text("the server's key")
    monkeypatch.setenv("FLCTL_TEST_SERVER_SECRET", "x")
    python = Path(sys.executable)
    # Execute
    wrap, env = confinement("required", python, work)
    read = subprocess.run(wrap([str(python), "-c", f"open({str(key)!r}).read()"]), env=env, capture_output=True,
                          check=False)
    write = subprocess.run(wrap([str(python), "-c", f"open({str(work / 'out')!r}, 'w').write('y')"]), env=env,
                           capture_output=True, check=False)
    # Assert
    assert read.returncode != 0 and b"PermissionError" in read.stderr
    assert write.returncode == 0, write.stderr
    assert env is not None and "FLCTL_TEST_SERVER_SECRET" not in env
    assert confinement("off", python, work) == (list, None)


# ------------------------------------------------------------------ on a real federation, beside Flower's own run
@pytest.fixture(scope="module")
def flower() -> Path:
    try:
        return flower_python()
    except FlowerMissing:
        pytest.skip("needs Flower's venv (.venv-flower): bash scripts/setup.sh --all")


def simulation_reference(python: Path, app: Path, work: Path, nodes: int) -> dict[str, np.ndarray]:
    """The app's final arrays from `flwr run` on Flower's Simulation Engine (`nodes` simulated SuperNodes)."""
    from flctl.node.flower.superlink_runner import FlwrRun, SuperLink

    link = SuperLink(python, work, simulation=nodes)
    run = None
    try:
        link.start()
        run = FlwrRun(link, app, [])
        lines = []
        while True:
            batch = list(run.lines(5.0))
            if None in batch:
                break
            lines += batch
        assert run.wait() == 0, "\n".join(map(str, lines[-20:]))
    finally:
        if run is not None:
            run.stop()
        link.stop()
    with np.load(work / "output" / "final.npz") as saved:
        return {name: saved[name] for name in saved.files}


def test_a_flower_app_on_flctl_ends_with_the_simulation_engines_model_bit_for_bit(flower, tmp_path):
    """`flctl job submit APP` of a Flower app folder on a 2-site mTLS federation FINISHES; its final model (kept by
    flctl) equals `flwr run` on the Simulation Engine's exactly (2 nodes: the sum FedAvg takes is the same whichever
    node answers first); the rounds' aggregated metrics and Flower's lines are flctl's job records and logs."""
    # Prepare
    app = write_app(tmp_path / "app")
    (tmp_path / "fed").mkdir()
    fed = make_federation(tmp_path / "fed", sites=2)
    venv = flower.parent.parent
    for site in fed.sites:  # sites confine job scripts (Landlock): each grants Flower's venv
        resources = fed.kit(site) / "local" / "resources.yml"
        resources.write_text(resources.read_text() + f"data_paths: [{venv}]\njob_env_allow: [FLCTL_FLOWER_PYTHON]\n")
    env = {"FLCTL_FLOWER_PYTHON": str(flower)}
    try:
        fed.start("localhost", env=env)
        for site in fed.sites:
            fed.start(site, env=env)
        fed.wait_online(fed.sites)
        # Execute
        out = fed.flctl("job", "submit", app, "--watch", "--json", timeout=600)
        job_id = json.loads(out.stdout)["id"] if out.stdout else ""
        logs = fed.flctl("job", "logs", job_id).stdout if job_id else ""
        show = fed.flctl_json("job", "show", job_id) if job_id else {}
    finally:
        fed.stop_all()
    reference = simulation_reference(flower, app, tmp_path / "simulation", nodes=2)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr + fed.logs()
    final = tensors.read_file(next(fed.prod.glob(f"localhost/workspace/jobs/{job_id}/models/final.safetensors")))
    assert sorted(final) == sorted(reference)
    for name, expected in reference.items():
        assert np.array_equal(np.asarray(final[name]), expected), name
    assert "[ROUND 2/2]" in logs and "Received successfully" in logs  # the server's and a site's Flower lines
    assert "the ServerApp confined as job code" in logs
    assert "a Flower call refused" not in logs  # each site spoke for its own Flower node only
    audit_log = fed.prod / "localhost" / "workspace" / "audit.jsonl"
    audit = [json.loads(line) for line in audit_log.read_text().splitlines()]
    actions = [entry["action"] for entry in audit if entry.get("job_id") == job_id
               or entry.get("args", {}).get("job_id") == job_id]
    assert {"job.submit", "job.started", "job.round", "job.finished"} <= set(actions)
    assert "job.task" not in actions  # the relay's tasks are transport, not events
    assert (show["rounds"], show["rounds_done"]) == (2, 2)  # from the app's num-server-rounds
    assert list(show["last_metrics"]) == ["flower"] and show["last_metrics"]["flower"]["train_loss"] > 0
