"""The server side of one running job, in a child process of its own: runs the job's workflow.

    python -m flctl.node.server.job_process JOB_DIR
    python -m flctl.node.server.job_process --spare      (imports done, waits for ["JOB_DIR"] on stdin)

`JOB_DIR/run.json` says which job, workflow and sites. The daemon and this process
talk in JSON lines, typed in `job_messages` (the server job link): this process writes requests on
stdout (`task`, `cancel`, `model`, `round`, `log`, `done`) and reads answers on stdin (`result`,
`failure`, `rejoin`, `abort`); one it cannot read is logged (on stderr, the job's log) and refused.
Models travel as safetensors files in JOB_DIR: written straight from the arrays,
and results mapped, not read, so the workflow's running sum reads each a block at a time.
Only a result of at most `task_board.INLINE_BYTES` comes in its `result` message (base64),
so a thousand sites' small answers never touch the disk.
A crash here fails the job; it never takes the daemon down.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from flctl.node.jobs import checkpoints
from flctl.node.jobs.job_spec import JobSpec, LoadedJob, TransferSpec
from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskResult
from flctl.node.process import spare_process
from flctl.node.process.links import LinkError
from flctl.node.server import result_files
from flctl.node.server.job_messages import (
    JOB_ANSWERS,
    JOB_REQUESTS,
    RUN_PLAN,
    AbortJob,
    CancelTask,
    JobAnswer,
    JobDone,
    JobRequest,
    LogLine,
    ModelSaved,
    PostTask,
    ReportSaved,
    RoundDone,
    SiteFailed,
    SiteRejoined,
    SiteResult,
)
from flctl.node.wire import quantize, tensors
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.state import (
    WorkflowState,
    read_state,
    report_path,
    state_path,
    write_report,
    write_state,
)

log = logging.getLogger("flctl.server.job")

class Aborted(Exception):
    """The daemon asked this job to stop."""


class PipeFederation:
    """`Federation` for a workflow running under the server daemon."""

    def __init__(self, job_id: str, job_dir: Path, sites: list[str], out: IO[str],
                 inbox: queue.Queue[JobAnswer], kit_root: Path | None = None) -> None:
        self.job_id = job_id
        self._kit_root = kit_root
        self._dir = job_dir
        self._sites = sites
        self._out = out
        self._inbox = inbox
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}  # site -> why; a failed site's job process is gone for good
        self._posted: dict[str, _Posted] = {}  # task id -> a task `post` sent, not yet answered
        self._early: deque[SiteResult] = deque()  # answers to posted tasks that came while `send` waited
        self.transfer: TransferSpec | None = None  # job.yml's `transfer:`: models go out quantized when it asks
        self.keep_rounds: int | None = None  # job.yml's `checkpoints: {keep}`: None keeps every round's

    def _emit(self, message: JobRequest) -> None:
        line = JOB_REQUESTS.encode(message).decode("utf-8")
        with self._lock:
            self._out.write(line)
            self._out.flush()

    def sites(self) -> list[str]:
        return list(self._sites)

    @property
    def job_dir(self) -> Path:
        """The job's folder on the server (`bundle.zip`, models/…): a workflow that runs a framework's own
        processes (`flower`) keeps their files here."""
        return self._dir

    def _post(self, task: Task, sites: Sequence[str], timeout_s: float) -> tuple[str, Path]:
        """Write the task's model (or link its checkpoint) and ask the daemon to give it to `sites`."""
        task_id = uuid.uuid4().hex[:12]
        payload = self._dir / "tasks" / f"{task_id}.safetensors"
        quantized = self.transfer is not None and self.transfer.quantize is not None \
            and task.kind in quantize.QUANTIZED_KINDS
        if quantized:  # never the checkpoint itself: the quantized model, written once for every site
            saved = self._dir / "models" / f"{task.saved_as}.safetensors"
            _write_atomic(payload, task.params or (tensors.map_file(saved) if task.saved_as else {}), self.transfer)
        elif not (task.saved_as and _link(self._dir / "models" / f"{task.saved_as}.safetensors", payload)):
            _write_atomic(payload, task.params)
        self._emit(PostTask(task_id=task_id, task_kind=task.kind, round=task.round, sites=list(sites),
                            payload=str(payload), meta=task.meta, timeout_s=timeout_s))
        return task_id, payload

    def send(self, task: Task, sites: Sequence[str], timeout_s: float) -> Iterator[TaskResult | SiteFailure]:
        task_id, payload = self._post(task, sites, timeout_s)
        del task  # the task is on its way: its model may go (the workflow keeps none, see FedAvg)
        waiting = set(sites)
        deadline = time.monotonic() + timeout_s
        try:
            self._drain()
        except Aborted:
            payload.unlink(missing_ok=True)
            raise
        try:
            for site in sorted(waiting & set(self._failed)):
                waiting.discard(site)
                yield SiteFailure(site, self._failed[site])
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    msg = self._inbox.get(timeout=left)
                except queue.Empty:
                    return
                if isinstance(msg, AbortJob):
                    raise Aborted(msg.reason)
                if isinstance(msg, SiteRejoined):
                    self._failed.pop(msg.site, None)
                    continue
                if isinstance(msg, SiteFailed):
                    self._failed[msg.site] = msg.reason
                    if msg.site in waiting:
                        waiting.discard(msg.site)
                        yield SiteFailure(msg.site, msg.reason)
                    continue
                if msg.task_id != task_id or msg.site not in waiting:
                    if msg.task_id in self._posted:
                        self._early.append(msg)
                    continue
                waiting.discard(msg.site)
                yield _result(msg)
        finally:
            self._emit(CancelTask(task_id=task_id, sites=sorted(waiting)))
            payload.unlink(missing_ok=True)

    def post(self, task: Task, site: str, timeout_s: float) -> str:
        """Send `task` to `site` alone and return at once (its answer comes from `next_answer`). To a site known to
        have failed nothing is sent: `next_answer` says so at once (post again once it may have rejoined)."""
        self._drain()
        if site in self._failed:
            task_id = uuid.uuid4().hex[:12]
            self._posted[task_id] = _Posted(site, None, timeout_s, time.monotonic() + timeout_s)
            return task_id
        task_id, payload = self._post(task, [site], timeout_s)
        self._posted[task_id] = _Posted(site, payload, timeout_s, time.monotonic() + timeout_s)
        return task_id

    def next_answer(self, timeout_s: float) -> tuple[str, TaskResult | SiteFailure] | None:
        deadline = time.monotonic() + timeout_s
        while self._posted:
            failed = next((tid for tid, p in self._posted.items() if p.site in self._failed), None)
            if failed is not None:
                site = self._close(failed, answered=False)
                return failed, SiteFailure(site, self._failed[site])
            now = time.monotonic()
            late = min(self._posted, key=lambda tid: self._posted[tid].deadline)
            if self._posted[late].deadline <= now:
                waited = self._posted[late].timeout_s
                return late, SiteFailure(self._close(late, answered=False), f"no answer within {waited:g} s")
            msg: JobAnswer
            if self._early:
                msg = self._early.popleft()
            elif deadline <= now:
                return None
            else:
                try:
                    msg = self._inbox.get(timeout=min(deadline, self._posted[late].deadline) - now)
                except queue.Empty:
                    continue
            if not isinstance(msg, SiteResult):
                self._control(msg)
                continue
            if msg.task_id in self._posted and self._posted[msg.task_id].site == msg.site:
                self._close(msg.task_id, answered=True)
                return msg.task_id, _result(msg)
        return None

    def _close(self, task_id: str, answered: bool) -> str:
        """A posted task is over: withdrawn from its site unless it answered (or was never sent); its site."""
        posted = self._posted.pop(task_id)
        if posted.payload is not None:
            if not answered:
                self._emit(CancelTask(task_id=task_id, sites=[posted.site]))
            posted.payload.unlink(missing_ok=True)
        return posted.site

    def _control(self, msg: JobAnswer) -> bool:
        """Apply a message about the job or a site rather than an answer (an abort raises Aborted); whether it was
        one."""
        if isinstance(msg, AbortJob):
            raise Aborted(msg.reason)
        if isinstance(msg, SiteRejoined):
            self._failed.pop(msg.site, None)
        elif isinstance(msg, SiteFailed):
            self._failed[msg.site] = msg.reason
        else:
            return False
        return True

    def _drain(self) -> None:
        """Apply what arrived between rounds: sites that failed or came back; an abort stops the job now."""
        keep: list[JobAnswer] = []
        while True:
            try:
                msg = self._inbox.get_nowait()
            except queue.Empty:
                break
            if not self._control(msg):
                keep.append(msg)
        for msg in keep:
            self._inbox.put(msg)

    def save_model(self, name: str, params: Params, saved_as: str = "") -> None:
        path = self._dir / "models" / f"{name}.safetensors"
        if not (saved_as and _link(self._dir / "models" / f"{saved_as}.safetensors", path)):
            _write_atomic(path, params)
        if checkpoints.round_of(name) is not None:
            checkpoints.prune(self._dir, self.keep_rounds)
        self._emit(ModelSaved(name=name))

    def load_model(self, name: str) -> Params:
        return tensors.map_file(self._dir / "models" / f"{name}.safetensors")

    def job_file(self, path: str) -> bytes:
        from flctl.node.jobs.bundle import read_member

        return read_member(self._dir / "bundle.zip", path)

    def kit_file(self, name: str) -> bytes:
        if self._kit_root is None or "/" in name or name in ("", ".", ".."):
            raise FileNotFoundError(f"the server kit's startup/{name} is not known to this job process")
        return (self._kit_root / "startup" / name).read_bytes()

    def save_report(self, name: str, report: dict[str, Any]) -> None:
        write_report(report_path(self._dir, name), report)
        self._emit(ReportSaved(name=name))

    def save_state(self, name: str, state: WorkflowState) -> None:
        write_state(state_path(self._dir, name), state)

    def record_round(self, round_no: int, metrics: dict[str, dict[str, float]]) -> None:
        self._emit(RoundDone(round=round_no, metrics=metrics))

    def log(self, message: str) -> None:
        self._emit(LogLine(line=message))

    def done(self, status: Literal["FINISHED", "FAILED", "ABORTED"], error: str = "") -> None:
        self._emit(JobDone(status=status, error=error))


@dataclass(frozen=True)
class _Posted:
    """A task `post` sent to one site, open until it is answered, fails or times out."""

    site: str
    payload: Path | None  # None: not sent, its site had failed
    timeout_s: float
    deadline: float  # time.monotonic() when it times out


def _result(msg: SiteResult) -> TaskResult | SiteFailure:
    """A site's answer as the workflow sees it: a small model from the message itself, a big one mapped from its
    file (read as the workflow uses it, never all at once); a quantized one (job.yml `transfer:`) made whole (a big
    one a block at a time into a file of its own, mapped as a plain one is), or the site failed for this answer when
    it does not fit."""
    try:
        if msg.data:
            data = base64.b64decode(msg.data)
            params, metadata = tensors.views(data), tensors.metadata_of(data)
            params = quantize.dequantize(params, metadata)
        else:
            path = Path(msg.path)
            params, metadata = tensors.map_file(path), tensors.read_metadata(path)
            result_files.recycle(path, params)  # written over by a later answer once the workflow lets go of it
            params = quantize.dequantize_to_file(params, metadata, path.with_name(f".{path.name}.whole"))
    except ValueError as exc:
        return SiteFailure(msg.site, f"its quantized model cannot be read: {exc}")
    return TaskResult(msg.site, params, msg.num_examples, dict(msg.metrics), dict(msg.meta))


def _write_atomic(path: Path, params: Params, transfer: TransferSpec | None = None) -> None:
    """Write `params` as safetensors to `path` (through a temporary file: a reader never sees half a model),
    quantized as `transfer` asks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if transfer is not None and transfer.quantize is not None:
        try:
            quantized, metadata = quantize.quantize(params, transfer.quantize, transfer.block_size)
        except ValueError as exc:  # the model cannot travel so (a value float16 cannot hold): the job fails, saying so
            raise WorkflowError(f"job.yml transfer: {{quantize: {transfer.quantize}}}: {exc}") from None
        tensors.write_file(tmp, quantized, metadata)
    else:
        tensors.write_file(tmp, params)
    os.replace(tmp, path)


def _link(saved: Path, path: Path) -> bool:
    """Make `path` another name of the saved model `saved` (the task is the checkpoint: 100 MB written once, not
    twice); False when that cannot be done, and the task is written instead."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(saved, path)
    except OSError:
        return False
    return True


def _initial_model(value: str, fed: PipeFederation, job_dir: Path, policy: str) -> Params:
    """job.yml's initial model: a file of the bundle, or the app's function called confined (never in this process)."""
    from flctl.node.jobs import initial_model

    params = initial_model.load(value, fed.job_file, lambda ref: initial_model.build_from_bundle(
        ref, job_dir / "bundle.zip", job_dir / "initial-model", policy), job_dir / initial_model.FROM_JOB_FILE)
    fed.log(f"initial model from {value}: {len(params)} tensors")
    return params


def _read_inbox(stream: IO[str], inbox: queue.Queue[JobAnswer]) -> None:
    """Move the daemon's answers into `inbox`; one that cannot be read is logged and refused."""
    for line in stream:
        try:
            inbox.put(JOB_ANSWERS.decode(line))
        except LinkError as exc:
            JOB_ANSWERS.refuse(exc, log)
    inbox.put(AbortJob(reason="the server daemon went away"))


def main(argv: list[str]) -> int:
    job_dir = Path(argv[0])
    try:
        run = RUN_PLAN.decode((job_dir / "run.json").read_bytes())
    except LinkError as exc:  # the daemon fails the job: this process exits before saying `done`
        RUN_PLAN.refuse(exc, log)
        return 2
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    inbox: queue.Queue[JobAnswer] = queue.Queue()
    threading.Thread(target=_read_inbox, args=(sys.stdin, inbox), daemon=True).start()
    fed = PipeFederation(run.job_id, job_dir, run.sites, out, inbox, Path(run.kit_root) if run.kit_root else None)
    try:
        job_spec = JobSpec.model_validate(run.spec)
        fed.transfer = job_spec.transfer
        fed.keep_rounds = job_spec.checkpoints.keep
        if job_spec.transfer.quantize:
            fed.log("models travel quantized: "
                    f"{quantize.describe(job_spec.transfer.quantize, job_spec.transfer.block_size)}")
        workflow = LoadedJob(job_spec, job_dir, job_spec.workflow_args()).create_workflow()
        initial = None
        if run.initial:
            initial = tensors.read_file(Path(run.initial))
            fed.log(f"resuming at round {run.start_round} from {Path(run.initial).name}")
        elif job_spec.initial_model:
            initial = _initial_model(job_spec.initial_model, fed, job_dir, run.job_isolation)
        if run.state:
            workflow.restore(read_state(Path(run.state)))
            fed.log(f"the workflow's state restored from {Path(run.state).name}")
        workflow.run(fed, initial, run.start_round)
    except Aborted as exc:
        fed.done("ABORTED", str(exc))
        return 0
    except WorkflowError as exc:
        fed.log(f"workflow failed: {exc}")
        fed.done("FAILED", str(exc))
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug in a workflow fails the job, with its traceback in the log
        for line in traceback.format_exc().splitlines():
            fed.log(line)
        fed.done("FAILED", f"the workflow crashed: {type(exc).__name__}: {exc}")
        return 1
    fed.done("FINISHED")
    return 0


if __name__ == "__main__":
    args: list[str] | None = sys.argv[1:]
    if args == [spare_process.SPARE_FLAG]:  # everything is imported: wait for the daemon's job
        args = spare_process.wait_for_job()
    if args is None:  # the daemon went away before handing over a job: nothing to clean up
        os._exit(0)
    sys.exit(main(args))
