"""Faults with real processes, one federation for the module (three sites; site-3 reaches the server through a
proxy the tests control; the server's workspace on a small tmpfs): the network cut and restored, a site sending
garbage, an abort under load, the server's disk full. Each test leaves the federation idle, every site online."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.admin.admin_client import AdminClient
from flctl.node.security import audit
from flctl.node.wire import tensors
from flctl.node.wire.proto import flctl_pb2 as pb

from .connect_proxy import ConnectProxy
from .federation import Federation, events_until_round, make_federation, pid_alive
from .raw_site import RawSite

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "playbooks" / "jobs" / "hello-numpy"
WORKSPACE_MB = 48
RESERVE_MB = 4
JOB_YML = """\
api_version: 1
name: {name}
workflow: {{type: fedavg, args: {{rounds: {rounds}, round_timeout_s: 60}}}}
sites: {sites}
min_sites: {min_sites}
"""


@dataclass
class Faulty:
    fed: Federation
    proxy: ConnectProxy
    tmpfs: Path | None  # the server's workspace, when it could be mounted as a tmpfs

    @property
    def workspace(self) -> Path:
        return self.fed.kit("localhost") / "workspace"


def _mount_tmpfs(path: Path, size_mb: int) -> bool:
    """Mount a tmpfs of `size_mb` at `path`; False where that is not allowed (not root, no mount)."""
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "flctl-test", str(path)],
                             capture_output=True, check=False)
    except OSError:
        return False
    return out.returncode == 0


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    root = tmp_path_factory.mktemp("faults")
    # A heartbeat timeout of 6 s: long enough that no site is dropped by chance on a loaded machine.
    fed = make_federation(root, sites=3, heartbeat_timeout_s=6)
    workspace = fed.kit("localhost") / "workspace"
    workspace.mkdir()
    mounted = _mount_tmpfs(workspace, WORKSPACE_MB)
    with open(fed.kit("localhost") / "local" / "resources.yml", "a") as resources:
        resources.write(f"disk_reserve_mb: {RESERVE_MB}\n")  # room enough to record a full disk's failures
    proxy = ConnectProxy()
    try:
        fed.start("localhost")
        fed.start("site-1")
        fed.start("site-2")
        fed.start("site-3", env={"grpc_proxy": proxy.url, "no_grpc_proxy": "", "no_proxy": ""})
        fed.wait_online(fed.sites)
        yield Faulty(fed, proxy, workspace if mounted else None)
    finally:
        fed.stop_all()
        proxy.close()
        if mounted:
            _unmount(workspace)


@pytest.fixture
def fed(faulty: Faulty) -> Iterator[Federation]:
    """The module's federation, every site online before and after the test."""
    faulty.proxy.restore()
    faulty.fed.wait_online(faulty.fed.sites)
    yield faulty.fed
    faulty.proxy.restore()


# ---------------------------------------------------------------------- jobs and expectations
def paced_job(root: Path, name: str, rounds: int, min_sites: int, pause_s: float, sites: str = "all") -> Path:
    """hello-numpy's training, pausing `pause_s` per round and holding while the file `<root>/hold-<site>` exists."""
    job = root / name
    (job / "app").mkdir(parents=True)
    (job / "job.yml").write_text(JOB_YML.format(name=name, rounds=rounds, min_sites=min_sites, sites=sites))
    source = (HELLO / "app" / "train.py").read_text()
    hook = ("        model = fl.receive()\n"
            "        import os, time\n"
            f"        while os.path.exists(os.path.join({str(root)!r}, 'hold-' + fl.site_name())):\n"
            "            time.sleep(0.05)\n"
            f"        time.sleep({pause_s})\n")
    assert "        model = fl.receive()\n" in source
    (job / "app" / "train.py").write_text(source.replace("        model = fl.receive()\n", hook))
    return job


def _hello_train() -> Any:
    spec = importlib.util.spec_from_file_location("hello_numpy_train", HELLO / "app" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = _hello_train()


def replay(participants: list[list[str]]) -> dict[str, np.ndarray]:
    """hello-numpy's global model after rounds answered by `participants[r]` (FedAvg weighted by examples)."""
    model: dict[str, np.ndarray] = {}
    for sites in participants:
        answers = [TRAIN.train_round(model, site) for site in sites]
        total = sum(n for _, _, n in answers)
        model = {k: (sum(p[k].astype(np.float64) * n for p, _, n in answers) / total).astype(np.float32)
                 for k in answers[0][0]}
    return model


def rounds_answered(events: list[Any]) -> list[list[str]]:
    """Per completed round (in order), the sites whose answers it averaged."""
    done = sorted((e.data["round"], sorted(e.data.get("metrics", {}))) for e in events if e.kind == "round")
    assert [r for r, _ in done] == list(range(len(done))), f"rounds out of order or missing: {done}"
    return [sites for _, sites in done]


def assert_final_model(admin: AdminClient, job_id: str, out: Path, participants: list[list[str]]) -> None:
    final = load_file(admin.download_job(job_id, out) / "models" / "final.safetensors")
    for name, value in replay(participants).items():
        np.testing.assert_allclose(final[name], value, rtol=1e-6, atol=1e-7)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what())
        time.sleep(0.2)


def descendants(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if pid_alive(child):
                found.add(child)
            todo.append(child)
    return found


def is_spare(pid: int) -> bool:
    """A spare job process (started with --spare, see node/process/spare_process.py) that has not been given a job."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"--spare" in args


# ---------------------------------------------------------------------- 1. the network cut and restored
def test_network_cut_and_restored_the_site_reconnects_and_the_job_finishes(faulty, fed, tmp_path):
    """Cut site-3's network mid-job: it is dropped, rounds go on without it; restored, it reconnects by itself,
    rejoins, and the job finishes with every round's exact model."""
    proxy = faulty.proxy
    job = paced_job(tmp_path, "cut-net", rounds=8, min_sites=1, pause_s=0.2)
    holds = [tmp_path / "hold-site-1", tmp_path / "hold-site-2"]
    with AdminClient.from_kit(fed.admin_kit) as admin:
        job_id = admin.submit_job(job)
        events, tunnels_before = [], 0
        for event in admin.watch(job_id):
            events.append(event)
            if event.kind == "round" and event.data["round"] == 0 and not tunnels_before:
                tunnels_before = proxy.tunnels
                proxy.cut()
            elif event.kind == "site_failed" and "site-3" in event.message and not holds[0].exists():
                # site-3 is out; hold the others until it is back, so the job cannot end without it.
                for hold in holds:
                    hold.touch()
                proxy.restore()
            elif event.kind == "site_rejoined" and "site-3" in event.message:
                for hold in holds:
                    hold.unlink(missing_ok=True)
        info = admin.get_job(job_id)
        assert info.status == "FINISHED", f"{info.status}: {info.error}\n{fed.logs()}"
        participants = rounds_answered(events)
        assert len(participants) == 8
        assert_final_model(admin, job_id, tmp_path / "out", participants)
    kinds = [e.kind for e in events]
    assert kinds.index("site_failed") < kinds.index("site_rejoined"), kinds
    assert any("site-3 went offline" in e.message for e in events if e.kind == "site_failed")
    assert participants[0] == ["site-1", "site-2", "site-3"]
    without = [r for r, sites in enumerate(participants) if "site-3" not in sites]
    back = [r for r, sites in enumerate(participants) if "site-3" in sites and r > 0]
    assert without, "rounds went on without the cut-off site"
    assert back and min(back) > min(without), "site-3 answered rounds again after it reconnected"
    assert proxy.refused > 0, "site-3 tried to reconnect while the network was cut"
    assert proxy.tunnels > tunnels_before, "site-3 reconnected through the restored network"


# ---------------------------------------------------------------------- 2. a site sending garbage
def _result(job_id: str, task_id: str, data: bytes, **fields: Any) -> pb.ResultHeader:
    examples = fields.pop("num_examples", TRAIN.num_examples("site-1"))
    return pb.ResultHeader(job_id=job_id, task_id=task_id, num_examples=examples, size=fields.pop("size", len(data)),
                           **fields)


def _refused(site: RawSite, code: grpc.StatusCode, phrase: str, header: pb.ResultHeader | None,
             chunks: list[bytes]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        site.submit(header, chunks)
    assert caught.value.code() == code, caught.value.details()
    assert phrase in (caught.value.details() or ""), caught.value.details()


def _safetensors_header(header: dict[str, Any], data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def send_garbage(site: RawSite, job_id: str, tid: str, trained: dict[str, np.ndarray]) -> None:
    """Every kind of bad result for the open task `tid`, and bad calls besides: each refused with its status."""
    valid = tensors.encode(trained)
    junk = os.urandom(len(valid))
    odd_dtype = _safetensors_header({k: {"dtype": "Q4", "shape": list(v.shape),
                                    "data_offsets": [0, v.size * 2]} for k, v in list(trained.items())[:1]},
                               b"\0" * (next(iter(trained.values())).size * 2))
    lying = _safetensors_header({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 4096]}},
                                b"\0" * 64)
    inv, nf = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    _refused(site, inv, "starts with its header", None, [valid])
    _refused(site, nf, "no running job", _result("not-a-job", tid, valid), [valid])
    _refused(site, nf, "no running job", _result("../../../evil", tid, valid), [valid])
    for task in ("../../evil", "0123456789ab"):  # taken for a task of a previous server run: ignored, not stored
        assert "was not given to site-1" in site.submit(_result(job_id, task, valid), [valid]).message
    _refused(site, inv, "over the limit", _result(job_id, tid, valid, size=1 << 50), [valid])
    _refused(site, inv, "negative", _result(job_id, tid, valid, size=-1), [valid])
    _refused(site, inv, "larger than its header", _result(job_id, tid, valid, size=10), [valid])
    _refused(site, inv, "ended after", _result(job_id, tid, valid, size=len(valid) + 5), [valid])
    _refused(site, inv, "not safetensors", _result(job_id, tid, junk), [junk])
    _refused(site, inv, "not safetensors", _result(job_id, tid, lying), [lying])
    _refused(site, inv, "not a safetensors dtype", _result(job_id, tid, odd_dtype), [odd_dtype])
    # Over INLINE_BYTES a result goes to a file first: checked the same way, and the file removed.
    big_junk = [os.urandom(1024 * 1024), os.urandom(1024 * 1024)]
    _refused(site, inv, "not safetensors", _result(job_id, tid, b"", size=2 << 20), big_junk)
    _refused(site, inv, "ended after", _result(job_id, tid, b"", size=3 << 20), big_junk)
    _refused(site, inv, "meta_json", _result(job_id, tid, valid, meta_json="{not json"), [valid])
    _refused(site, inv, "meta_json", _result(job_id, tid, valid, meta_json="[1, 2]"), [valid])
    big = b"\0" * (9 * 1024 * 1024)  # one message over the 8 MiB limit
    _refused(site, grpc.StatusCode.RESOURCE_EXHAUSTED, "", _result(job_id, tid, big), [big])
    # Other calls with garbage.
    with pytest.raises(grpc.RpcError) as caught:
        site.stub.Report(pb.ReportRequest(job_id="../../evil", status="finished"), timeout=10)
    assert caught.value.code() == nf
    with pytest.raises(grpc.RpcError) as caught:
        list(site.stub.FetchBundle(pb.JobRef(job_id="../../evil"), timeout=10))
    assert caught.value.code() == nf
    done, _ = site.fetch_task("no-such-job")
    assert done.done and done.status == "UNKNOWN"


def test_a_site_sending_garbage_is_refused_and_the_job_goes_on(faulty, fed, tmp_path):
    """site-1, played over raw gRPC with its real certificate, sends malformed, oversized, wrongly shaped and
    misaddressed results: each is refused with a clear status, nothing is written outside the job, the server stays
    up, and the job finishes on the good answers (the exact model of the rounds they made)."""
    fed.stop("site-1")
    job = paced_job(tmp_path, "garbage", rounds=3, min_sites=1, pause_s=0.0, sites="[site-1, site-2]")
    good = tensors.encode(TRAIN.train_round({}, "site-1")[0])
    try:
        with RawSite(fed.kit("site-1")) as site, AdminClient.from_kit(fed.admin_kit) as admin:
            fed.wait_online(["site-1"])
            job_id = admin.submit_job(job)
            # Round 0: a good answer, so round 0 sets the model's shapes.
            task0, _ = site.next_task(job_id)
            assert task0.round == 0
            ack = site.submit(_result(job_id, task0.task_id, good, metrics={"loss": 1.0}), [good])
            assert ack.message == "accepted"
            task1, payload = site.next_task(job_id, task0.task_id)
            assert task1.round == 1
            tid = task1.task_id
            model = tensors.decode(payload)
            trained = TRAIN.train_round(model, "site-1")[0]
            valid = tensors.encode(trained)
            send_garbage(site, job_id, tid, trained)
            # The task is still open after all that: a model of the wrong shape is taken, then the workflow
            # drops site-1 from this round (the daemon cannot know shapes; the workflow does).
            wrong = tensors.encode({"w": np.zeros((3, 3), np.float32), "b": np.zeros(4, np.float32)})
            assert site.submit(_result(job_id, tid, wrong), [wrong]).message == "accepted"
            again = site.submit(_result(job_id, tid, valid), [valid])
            assert "ignored" in again.message, "a second answer to the same task is ignored"
            # Round 2: a good answer again.
            task2, payload = site.next_task(job_id, tid)
            assert task2.round == 2
            answer = tensors.encode(TRAIN.train_round(tensors.decode(payload), "site-1")[0])
            assert site.submit(_result(job_id, task2.task_id, answer), [answer]).message == "accepted"
            events = list(admin.watch(job_id))
            info = admin.get_job(job_id)
            assert info.status == "FINISHED", f"{info.status}: {info.error}\n{fed.logs()}"
            participants = rounds_answered(events)
            assert participants == [["site-1", "site-2"], ["site-2"], ["site-1", "site-2"]]
            assert_final_model(admin, job_id, tmp_path / "out", participants)
            logs = "\n".join(entry.line for entry in admin.logs(job_id, site="server"))
            assert "site-1 failed: sent an unusable model: site-1: tensor 'w' has shape (3, 3)" in logs
    finally:
        fed.start("site-1")
    evil = [p for p in faulty.fed.root.rglob("*evil*")] + list(Path("/tmp").glob("evil*"))
    assert not evil, f"garbage names became files: {evil}"
    assert not list((faulty.workspace / "jobs").glob("*/results/*")), "no half-received result is left behind"


# ---------------------------------------------------------------------- 3. abort under load
def test_abort_under_load_ends_every_job_process_and_the_next_job_runs(fed, tmp_path):
    """Abort a job while rounds race through three sites: it ends ABORTED, every process it started at the server
    and the sites is gone, and the next job runs to the end."""
    job = paced_job(tmp_path, "busy", rounds=10_000, min_sites=1, pause_s=0.0)
    # The earlier tests' job processes gone and each node's spare waiting: a spare started during this job (after an
    # earlier job's process exits) is not one of this job's processes, and would never end with it.
    wait_until(lambda: all(pids and all(map(is_spare, pids))
                           for pids in (descendants(proc.pid) for proc in fed.processes.values())), 30,
               lambda: f"nodes not idle: { {n: descendants(p.pid) for n, p in fed.processes.items()} }")
    with AdminClient.from_kit(fed.admin_kit) as admin:
        job_id = admin.submit_job(job)
        events_until_round(admin, job_id, 3)
        started = {name: descendants(proc.pid) for name, proc in fed.processes.items()}
        assert all(started.values()), f"a job process runs at every node: {started}"
        info = admin.abort_job(job_id)
        kinds = [e.kind for e in admin.watch(job_id)]
        info = admin.get_job(job_id)
    assert info.status == "ABORTED", f"{info.status}: {info.error}"
    assert "aborted by" in info.error
    assert kinds[-1] == "aborted"
    every = set().union(*started.values())
    wait_until(lambda: not any(pid_alive(pid) for pid in every), 30,
               lambda: f"job processes still alive: {[p for p in every if pid_alive(p)]}\n{fed.logs()}")
    # What runs now under the nodes is at most a spare job process each, waiting for the next job.
    left = {name: [pid for pid in descendants(proc.pid) if not is_spare(pid)] for name, proc in fed.processes.items()}
    assert not any(left.values()), f"nothing the job started is left: {left}"
    out = fed.flctl("job", "submit", HELLO, "--watch")
    assert out.returncode == 0, out.stdout + out.stderr + fed.logs()


# ---------------------------------------------------------------------- 4. the server's disk full
def fill(path: Path) -> None:
    """Write `path` until the disk under it has no byte left."""
    with open(path, "wb", buffering=0) as handle:
        for block in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * block)


def test_disk_full_on_the_server_fails_the_job_cleanly_and_the_next_job_runs(faulty, fed, tmp_path):
    """Something fills the disk under the server's workspace to the last byte mid-job: the job FAILS with a
    message that says so, the server stays up, its store and audit log stay whole (nothing recorded before is
    lost), and once space is freed the next job runs."""
    if faulty.tmpfs is None:
        pytest.skip("mounting a tmpfs for the server's workspace needs root")
    workspace = faulty.tmpfs
    assert (workspace / "disk-reserve").is_file(), "the server keeps a reserve"
    job = paced_job(tmp_path, "fill-disk", rounds=1000, min_sites=1, pause_s=0.2)
    filler = workspace / "filler"
    try:
        with AdminClient.from_kit(fed.admin_kit) as admin:
            job_id = admin.submit_job(job)
            before = events_until_round(admin, job_id, 1)
            fill(filler)
            wait_until(lambda: admin.get_job(job_id).status != "RUNNING", 60,
                       lambda: f"the job still runs on a full disk\n{fed.logs()}")
            info = admin.get_job(job_id)
            assert info.status == "FAILED", f"{info.status}: {info.error}"
            assert "disk is full" in info.error or "No space left" in info.error, info.error
            assert "Traceback" not in info.error
            events = list(admin.watch(job_id))
            assert [(e.seq, e.kind) for e in events[:len(before)]] == [(e.seq, e.kind) for e in before]
            assert events[-1].kind == "failed"
            assert {s.name for s in admin.list_sites() if s.online} == set(fed.sites), "the server still answers"
    finally:
        filler.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(f"file:{workspace / 'server.db'}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    verdict = audit.verify(workspace / "audit.jsonl")
    assert verdict.ok, verdict.problem
    out = fed.flctl("job", "submit", HELLO, "--watch")
    assert out.returncode == 0, out.stdout + out.stderr + fed.logs()
    wait_until((workspace / "disk-reserve").is_file, 30, lambda: "the server took its reserve back")
