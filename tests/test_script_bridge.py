"""ScriptBridge: real training scripts run as subprocesses, driven task by task through the Client API."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from flctl.node.client.script_bridge import ScriptBridge, ScriptError
from flctl.node.jobs.tasks import Params, Task


@dataclass
class Run:
    """A bridge over one script, with what its callbacks received."""

    bridge: ScriptBridge
    output: list[str] = field(default_factory=list)
    metrics: list[tuple[str, float, int | None]] = field(default_factory=list)

    def wait_for_output(self, prefix: str, timeout_s: float = 10) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.output):
                if line.startswith(prefix):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"the script never printed {prefix!r}; it printed {self.output}")


Launch = Callable[..., Run]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start a script (its source as text) under a ScriptBridge; every one is killed after the test."""
    runs: list[Run] = []

    def start(source: str, command: list[str] | None = None) -> Run:
        app = tmp_path / f"app{len(runs)}"
        app.mkdir()
        (app / "train.py").write_text(textwrap.dedent(source))
        run = Run(bridge=None)  # type: ignore[arg-type]
        run.bridge = ScriptBridge(workdir=app, command=command or ["python", "train.py"], env={"EXTRA": "yes"},
                                  site="site-a", job_id="job-7", on_output=run.output.append,
                                  on_metric=lambda name, value, step: run.metrics.append((name, value, step)))
        runs.append(run)
        run.bridge.start()
        return run

    yield start
    for run in runs:
        run.bridge.kill()


TRAIN = """
    import os, sys
    import flctl.client as fl

    fl.init()
    print("identity", fl.site_name(), fl.job_id(), os.environ["EXTRA"], sys.executable == {python!r})
    while fl.running():
        model = fl.receive()
        fl.log("round", float(model.round), step=model.round)
        params = {{name: value + 1 for name, value in model.params.items()}}
        fl.send(fl.Model(params=params, metrics={{"loss": 1 / model.round}}, num_examples=10 * model.round,
                         meta={{"seen": model.meta, "task": model.task}}))
    print("loop ended")
"""


def test_three_tasks_add_one_to_every_param(launch: Launch) -> None:
    """Each round's answer feeds the next: params +1 per round, exact; counts, metrics and meta round-trip."""
    run = launch(TRAIN.format(python=sys.executable))
    params: Params = {"w": np.array([1.0, 2.0, 3.0], dtype=np.float32), "b": np.array([[0, -1]], dtype=np.int64)}

    results = []
    for round_ in (1, 2, 3):
        result = run.bridge.run_task(Task("train", round_, params, meta={"lr": 0.5}), timeout_s=10)
        results.append(result)
        params = result.params
    code = run.bridge.finish()

    assert params["w"].tolist() == [4.0, 5.0, 6.0] and params["w"].dtype == np.float32
    assert params["b"].tolist() == [[3, 2]] and params["b"].dtype == np.int64
    assert [r.num_examples for r in results] == [10, 20, 30]
    assert [r.metrics for r in results] == [{"loss": 1.0}, {"loss": 0.5}, {"loss": 1 / 3}]
    assert results[0].meta == {"seen": {"lr": 0.5}, "task": "train"}
    assert {r.site for r in results} == {"site-a"}
    assert run.metrics == [("round", 1.0, 1), ("round", 2.0, 2), ("round", 3.0, 3)]
    assert code == 0
    assert "identity site-a job-7 yes True" in run.output
    assert run.output[-1] == "loop ended"


def test_torch_tensors_sent_back_become_numpy(launch: Launch) -> None:
    """A script may answer with torch tensors (even ones that need grad): the site gets numpy arrays."""
    run = launch("""
        import torch
        import flctl.client as fl

        fl.init()
        while fl.running():
            model = fl.receive()
            weight = torch.nn.Parameter(torch.from_numpy(model.params["w"]) * 2)
            fl.send(fl.Model(params={"w": weight, "count": torch.tensor([7], dtype=torch.int32)}, num_examples=1))
    """)

    result = run.bridge.run_task(Task("train", 1, {"w": np.array([0.5, 1.5], dtype=np.float32)}), timeout_s=30)

    assert isinstance(result.params["w"], np.ndarray)
    assert result.params["w"].tolist() == [1.0, 3.0] and result.params["w"].dtype == np.float32
    assert result.params["count"].tolist() == [7] and result.params["count"].dtype == np.int32
    assert run.bridge.finish() == 0


def test_script_that_raises_reports_its_traceback(launch: Launch) -> None:
    """A crash is a ScriptError quoting the traceback; metrics logged before it still arrived."""
    run = launch("""
        import flctl.client as fl

        fl.init()
        fl.receive()
        fl.log("loss", 0.5, step=1)
        raise ValueError("boom")
    """)

    with pytest.raises(ScriptError, match="exit code 1") as caught:
        run.bridge.run_task(Task("train", 1, {}), timeout_s=10)

    assert "ValueError: boom" in str(caught.value)
    assert caught.value.exit_code == 1
    assert "ValueError: boom" in run.output  # stderr is merged into the output
    assert run.metrics == [("loss", 0.5, 1)]


def test_script_that_exits_without_sending(launch: Launch) -> None:
    """Exiting cleanly with a task unanswered is a ScriptError too."""
    run = launch("""
        import flctl.client as fl

        fl.init()
        fl.receive()
        print("leaving early")
    """)

    with pytest.raises(ScriptError, match=r"exited \(code 0\) before answering task 'train' \(round 3\)") as caught:
        run.bridge.run_task(Task("train", 2, {}), timeout_s=10)
    assert "leaving early" in str(caught.value)


def test_script_that_never_calls_init(launch: Launch) -> None:
    """A script that never connects: run_task says so, finish returns its exit code."""
    run = launch("""
        import sys
        print("not a federated script")
        sys.exit(3)
    """)

    with pytest.raises(ScriptError, match=r"without calling fl.init\(\)"):
        run.bridge.run_task(Task("train", 1, {}), timeout_s=10)
    assert run.bridge.finish() == 3


def test_finish_ends_the_loop(launch: Launch) -> None:
    """finish() makes running() False (even before the script connected): its loop ends and it exits 0."""
    run = launch("""
        import flctl.client as fl

        fl.init()
        while fl.running():
            raise AssertionError("no task was given")
        print("loop ended")
    """)

    assert run.bridge.finish(timeout_s=10) == 0
    assert run.output == ["loop ended"]


def test_kill_ends_the_script_and_its_children(launch: Launch) -> None:
    """kill() SIGKILLs the whole process group: the script and the `sleep` it started both die."""
    run = launch("""
        import subprocess, time
        import flctl.client as fl

        fl.init()
        child = subprocess.Popen(["sleep", "600"])
        print("child", child.pid)
        time.sleep(600)
    """)
    child_pid = int(run.wait_for_output("child ").split()[1])
    script_pid = run.bridge.pid
    assert script_pid is not None and _alive(child_pid)

    run.bridge.kill()
    run.bridge.kill()  # idempotent

    assert not _alive(script_pid)
    _wait_gone(child_pid)
    with pytest.raises(ScriptError, match="killed"):
        run.bridge.run_task(Task("train", 1, {}), timeout_s=5)


def test_timeout_leaves_the_script_running(launch: Launch) -> None:
    """A task not answered in time is a ScriptError; the script is still there for kill()."""
    run = launch("""
        import time
        import flctl.client as fl

        fl.init()
        fl.receive()
        time.sleep(600)
    """)

    with pytest.raises(ScriptError, match=r"did not answer task 'train' \(round 2\) within 0.5 s"):
        run.bridge.run_task(Task("train", 1, {}), timeout_s=0.5)
    assert run.bridge.pid is not None and _alive(run.bridge.pid)


def test_finish_kills_a_script_that_does_not_exit(launch: Launch) -> None:
    """finish() kills a script still running after its timeout, and returns -SIGKILL."""
    run = launch("import time\ntime.sleep(600)\n")

    assert run.bridge.finish(timeout_s=0.3) == -9


def test_only_flctls_client_api_is_added_to_the_path(launch: Launch) -> None:
    """Any interpreter can `import flctl.client`; the rest of flctl (and its site-packages) stays out of its path."""
    run = launch("""
        import flctl.client
        try:
            import flctl.provisioner
        except ModuleNotFoundError:
            print("provisioner hidden")
    """, command=[sys.executable, "-S", "train.py"])  # -S: no site-packages, only PYTHONPATH

    assert run.bridge.finish(timeout_s=10) == 0
    assert run.output == ["provisioner hidden"]


def test_a_script_importing_node_api_gets_the_client_api_and_a_warning(launch: Launch) -> None:
    """The old `import node.api as fl` still works at a site: the same Client API, with a warning naming the new one."""
    run = launch("""
        import node.api as fl
        import flctl.client

        print("same module", fl is flctl.client)
        fl.init()
        while fl.running():
            model = fl.receive()
            fl.send(fl.Model(params={"w": model.params["w"] + 1}, num_examples=1))
    """)

    result = run.bridge.run_task(Task("train", 1, {"w": np.zeros(2, np.float32)}), timeout_s=10)

    assert result.params["w"].tolist() == [1.0, 1.0]
    assert run.bridge.finish() == 0
    assert "same module True" in run.output
    assert any("'import node.api' is deprecated: use 'import flctl.client as fl'" in line for line in run.output)


def test_a_late_answer_is_dropped(launch: Launch) -> None:
    """After a timeout the next task still works, and the late answer to the old one is not taken for it."""
    run = launch("""
        import time
        import flctl.client as fl

        fl.init()
        while fl.running():
            model = fl.receive()
            if model.round == 1:
                time.sleep(0.5)
            fl.send(fl.Model(params={"round": [model.round]}, num_examples=model.round))
    """)
    with pytest.raises(ScriptError, match="did not answer"):
        run.bridge.run_task(Task("train", 1, {}), timeout_s=0.2)

    result = run.bridge.run_task(Task("train", 2, {}), timeout_s=10)

    assert result.num_examples == 2 and result.params["round"].tolist() == [2]
    assert run.bridge.finish(timeout_s=10) == 0


def test_the_socket_is_private_and_removed(launch: Launch) -> None:
    """The script connects through a socket in a mode-0700 folder, which is gone once the script finished."""
    run = launch("""
        import os, time
        import flctl.client as fl

        print("address", os.environ["FLCTL_API_ADDRESS"])
        fl.init()
        while fl.running():
            pass
    """)
    folder = Path(run.wait_for_output("address ").split(" ", 1)[1]).parent

    assert folder.stat().st_mode & 0o777 == 0o700
    assert run.bridge.finish(timeout_s=10) == 0
    assert not folder.exists()


def test_a_pickled_message_is_refused(launch: Launch) -> None:
    """A peer that sends pickles (Connection.send) is a protocol error: the bridge never unpickles."""
    run = launch("""
        import os, time
        from multiprocessing.connection import Client

        conn = Client(os.environ["FLCTL_API_ADDRESS"], family="AF_UNIX",
                      authkey=bytes.fromhex(os.environ["FLCTL_API_AUTHKEY"]))
        conn.send({"type": "hello", "version": 1})
        time.sleep(600)
    """)

    with pytest.raises(ScriptError, match="connection to flctl failed"):
        run.bridge.run_task(Task("train", 1, {}), timeout_s=10)


def test_a_command_that_cannot_start(tmp_path: Path) -> None:
    """A missing program is a ScriptError naming it."""
    bridge = ScriptBridge(workdir=tmp_path, command=["no-such-program-xyz"], env={}, site="s", job_id="j",
                          on_output=print, on_metric=lambda *_: None)

    with pytest.raises(ScriptError, match="cannot start 'no-such-program-xyz'"):
        bridge.start()
    assert bridge.pid is None


def _alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        time.sleep(0.02)
