"""The site side of one running job, in a process of its own:

    python -m flctl.node.site.job_process KIT JOB_DIR JOB_ID
    python -m flctl.node.site.job_process --spare      (imports done, waits for [KIT, JOB_DIR, JOB_ID] on stdin)

It runs the job's training script (through `ScriptBridge`), long-polls the server
for tasks, hands each to the script, and returns the script's answer. The
script's output and metrics are reported to the server as they come. SIGTERM
ends the script's whole process group and then this process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import grpc

from flctl.node.client import api_wire as wire
from flctl.node.config.kit import NodeKit, load_kit
from flctl.node.config.privacy import ScopeRefused, load_privacy
from flctl.node.config.resources import Resources, load_resources, resources_path
from flctl.node.errors import TaskError
from flctl.node.jobs.job_status import JobStatus, SiteState
from flctl.node.jobs.tasks import Task, TaskKind
from flctl.node.process import spare_process
from flctl.node.process.links import LinkError
from flctl.node.relay.failover import kit_for_job
from flctl.node.secagg.payload import SecAggError
from flctl.node.site.filters.base import FilterError
from flctl.node.site.inference_release import declared_returns
from flctl.node.site.job_launch import SiteJob, read_placement, write_script_group
from flctl.node.site.model_transfer import ModelCalls, fetch_task, submit_result
from flctl.node.site.sandbox import Confinement, Isolation, available, exposing, not_dumpable, script_grants
from flctl.node.transport.channel import site_channel, site_transport
from flctl.node.wire import tensors
from flctl.node.wire.model_buffers import ModelBuffers
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc
from flctl.provisioner.errors import KitError

if TYPE_CHECKING:
    from flctl.node.client.script_bridge import ScriptBridge
    from flctl.node.jobs.job_spec import AppSpec, TransferSpec
    from flctl.node.secagg.site_codec import SiteCodec
    from flctl.node.site.filters.pipeline import FilterPipeline
    from flctl.node.workflows.base import WorkflowArgs

log = logging.getLogger("flctl.site.job")
FLUSH_S = 0.5


class Reporter:
    """Buffers the script's output lines and metrics and sends them to the server every FLUSH_S."""

    def __init__(self, stub: pb_grpc.FederationStub, job_id: str) -> None:
        self._stub = stub
        self._job_id = job_id
        self._logs: list[pb.LogLine] = []
        self._metrics: list[pb.Metric] = []
        self._lock = threading.Lock()
        self._sending = threading.RLock()  # reentrant: the SIGTERM handler flushes too
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        """Send every FLUSH_S from now on, the site filters' log records included (`FilterNotes`)."""
        self._thread.start()
        logging.getLogger("flctl.site.filters").addHandler(FilterNotes(self))

    def line(self, text: str) -> None:
        with self._lock:
            self._logs.append(pb.LogLine(time=time.time(), line=text))

    def metric(self, name: str, value: float, step: int | None) -> None:
        with self._lock:
            self._metrics.append(pb.Metric(name=name, value=float(value), step=step or 0, has_step=step is not None,
                                           time=time.time()))

    def flush(self, status: SiteState | None = None, error: str = "") -> None:
        """Send the lines and metrics gathered, and `status` (this site's part in the job) when given. One flush at
        a time: when it returns, whatever was gathered before the call has reached the server (or is kept)."""
        with self._sending:
            self._send(status, error)

    def _send(self, status: SiteState | None, error: str) -> None:
        with self._lock:
            logs, metrics = self._logs, self._metrics
            self._logs, self._metrics = [], []
        if not (logs or metrics or status):
            return
        try:
            self._stub.Report(pb.ReportRequest(job_id=self._job_id, logs=logs, metrics=metrics, status=status or "",
                                               error=error), timeout=30)
        except grpc.RpcError:
            if not status:  # keep them for the next try
                with self._lock:
                    self._logs[:0], self._metrics[:0] = logs, metrics

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()

    def stop(self) -> None:
        self._stop.set()


class FilterNotes(logging.Handler):
    """The site filters' log records (`flctl.site.filters`: the privacy spent after each round) as job log lines, so
    `flctl job logs` shows them as well as the site's job_process.log."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.INFO)
        self._reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self._reporter.line(record.getMessage())


def _serve_tasks(calls: ModelCalls, job_id: str, bridge: ScriptBridge, reporter: Reporter,
                 filters: FilterPipeline, codec: SiteCodec | None = None,
                 transfer: TransferSpec | None = None) -> int:
    """Hand the server's tasks to the script and its answers to the server until the job ends here, each through
    the site's privacy `filters` and the job's secure-aggregation `codec` (in this process: the script cannot skip
    them; the codec answers its own tasks, which the script never sees)."""
    last = ""
    while True:
        header, payload = fetch_task(calls, job_id, last)
        if header.done:
            log.info("model buffers: %d made, %d reused", calls.buffers.made, calls.buffers.reused)
            if JobStatus.parse(header.status) == JobStatus.FINISHED:
                code = bridge.finish()
                reporter.line(f"training script exited with code {code}")
            else:
                bridge.kill()
            reporter.flush(status=SiteState.FINISHED)
            return 0
        if not header.task_id:
            continue
        tensors.parse_header(payload, len(payload))  # the server checked it; a broken one fails here, clearly
        payload = _dequantized(payload)
        task = Task(TaskKind.parse(header.kind), header.round, {}, json.loads(header.meta_json or "{}"))
        if task.kind == TaskKind.SECURE:
            if codec is None:
                raise TaskError("the server sent a secure-aggregation step, but this job's job.yml asks for no "
                                "secure aggregation")
            done, out = codec.step(task, payload)
            submit_result(calls, job_id, header.task_id, done, out)
            last = header.task_id
            continue
        if codec is not None:
            task, brought = codec.task_in(task, payload)
        else:
            brought = payload
        del payload
        task, given = filters.task_in(task, brought, bridge.site)
        parts: list[wire.Payload] = [given]
        del brought, given  # held by `parts` alone, which the bridge empties once the script has the model
        answer, result = bridge.run_encoded(task, parts, timeout_s=header.timeout_s or None)
        answer, sent = filters.result_out(task, answer, result, bridge.site)
        del result
        sent = _quantized(sent, task, transfer)  # after the filters: what they leave is what travels quantized
        if codec is not None:  # after the filters: what they leave is what is encrypted or masked
            answer, sent = codec.result_out(task, answer, sent)
        reporter.flush()  # the task's fl.log values reach the server before its result (recorded once: store.py)
        submit_result(calls, job_id, header.task_id, answer, sent)
        del sent
        last = header.task_id


def _dequantized(payload: memoryview) -> memoryview:
    """The task's params as the script is given them: a model the server quantized (job.yml `transfer:`) made
    whole (`flctl.node.wire.quantize`), any other as it is. TaskError when it does not fit."""
    from flctl.node.wire import quantize

    try:
        return memoryview(tensors.encode(quantize.decode(payload))) if quantize.is_quantized(payload) else payload
    except ValueError as exc:
        raise TaskError(f"the server's quantized model cannot be read: {exc}") from None


def _quantized(sent: bytes | memoryview, task: Task, transfer: TransferSpec | None) -> bytes | memoryview:
    """The answer's params as they leave the site: quantized as job.yml's `transfer:` asks, for a task whose params
    are a model. TaskError when they cannot be (say, a value float16 cannot hold)."""
    from flctl.node.wire import quantize

    if transfer is None or transfer.quantize is None or task.kind not in quantize.QUANTIZED_KINDS:
        return sent
    try:
        return quantize.encode(tensors.views(sent), transfer.quantize, transfer.block_size)
    except ValueError as exc:
        raise TaskError(f"job.yml transfer: {{quantize: {transfer.quantize}}}: {exc}") from None


def job_isolation(resources: Resources) -> Isolation:
    """The isolation this site gives job scripts, as its `local/resources.yml` asks (`off`: none)."""
    return Isolation("none") if resources.job_isolation == "off" else available(resources.job_user)


def isolation_note(isolation: Isolation, resources: Resources) -> str:
    """What `flctl site ls` and a job's first log line at the site say: `landlock v7`, `user nobody`, `none`,
    `none (refuses jobs)` or `off`."""
    if resources.job_isolation == "off":
        return "off"
    if isolation.kind == "none" and resources.job_isolation == "required":
        return "none (refuses jobs)"
    return isolation.describe()


def isolation_refusal(confine: Confinement, resources: Resources, kit_root: Path, job_dir: Path) -> str:
    """Why this site must not run the script ('' when it may): isolation required and none found, or the kit's
    `startup/` or the site's workspace readable through a granted path (a kit under /usr or a data path)."""
    if confine.isolation.kind == "none" and resources.job_isolation == "required":
        return ("it requires job isolation (job_isolation: required) and has neither Landlock nor root to run the "
                "script as another user")
    if confine.isolation.kind == "landlock":
        grants = script_grants(confine.workspace, None, confine.data_paths)
        for secret in (kit_root / "startup", job_dir.parent.parent / "audit.jsonl"):
            granted = exposing(grants, secret)
            if granted:
                return (f"{secret} lies under {granted}, which job scripts may read; move the kit out of it (or "
                        "drop it from data_paths)")
    return ""


def privacy_filters(kit_root: Path, job_dir: Path, job_id: str, scope: str | None,
                    inference_returns: tuple[str, ...] = ()) -> FilterPipeline | str:
    """The site's filters for the job's privacy `scope` (None: the site's default scope), with what an inference
    job declares its answers carry out (`inference_returns`, from its signed job.yml), keeping their state in
    `job_dir`/privacy (the privacy spent, across restarts of this process), or why the site refuses the job: it has
    no such scope, its `local/privacy.yml` cannot be read or was edited into a bad one since the daemon started, or
    the privacy spent so far cannot be read (a job never runs unfiltered)."""
    try:
        filters = load_privacy(kit_root / "local" / "privacy.yml").pipeline(job_id, scope)
        filters = replace(filters, inference_returns=inference_returns)
        filters.keep_state(job_dir / "privacy")
    except (KitError, ScopeRefused, OSError, ValueError) as exc:
        return str(exc)
    return filters


def secure_codec(kit: NodeKit, job_dir: Path, job_id: str, args: WorkflowArgs) -> SiteCodec | str | None:
    """The job's secure-aggregation codec at this site (None: the job asks for none), or why the site refuses the
    job (its kit has no HE context…): a job that asks for it never runs without it."""
    from flctl.node.secagg.site_codec import site_codec
    from flctl.node.workflows.secure_sum import secure_mode_of

    mode = secure_mode_of(args)
    try:
        return site_codec(mode, kit, job_dir, job_id)
    except SecAggError as exc:
        return str(exc)


def _resources(kit_root: Path) -> Resources:
    """The site's `local/resources.yml`; the defaults when it was edited into a bad value since the daemon read it."""
    try:
        return load_resources(resources_path(kit_root))
    except KitError as exc:
        log.warning("%s; using the default settings", exc)
        return Resources()


def setup_notes(reporter: Reporter, site: str, filters: FilterPipeline, compat: str | None) -> None:
    """The job's log lines at `site` on what the script runs under: the privacy scope's filters, and for job.yml's
    app.compat, whose module the script gets (flctl's, even where the real framework is installed)."""
    reporter.line(f"privacy scope at {site}: {filters.describe()}")
    if compat:
        from flctl.node.client.compat import installed_note

        reporter.line(f"compat {compat} at {site}: {installed_note(compat)}")


def _refuse(reporter: Reporter, chan: grpc.Channel, error: str) -> int:
    """Fail this site's part before the script starts, saying why; the exit code."""
    reporter.flush(status=SiteState.FAILED, error=error)
    reporter.stop()
    chan.close()
    return 1


def apply_placement(job_dir: Path, reporter: Reporter) -> str:
    """Apply what the site gave the job (`job_launch.JobPlacement`): pin this process, and so its script, to the
    job's cores (its GPUs are the script's environment, `make_bridge`). Why not, when that cannot be done (the job
    is refused), else ''."""
    try:
        placement = read_placement(job_dir)
    except LinkError as exc:
        return str(exc)
    if placement.cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, placement.cpus)
        except OSError as exc:
            return f"could not pin the job to cores {placement.cpus}: {exc}"
        reporter.line(f"pinned to cores {', '.join(map(str, placement.cpus))}")
    if placement.cuda_visible_devices is not None:
        reporter.line(f"GPUs given: {placement.cuda_visible_devices or 'none'} (CUDA_VISIBLE_DEVICES)")
    return ""


def make_bridge(app: AppSpec, site: str, job_dir: Path, job_id: str, reporter: Reporter, confine: Confinement,
                job_name: str = "", only_metrics: tuple[str, ...] | None = None,
                buffers: ModelBuffers | None = None) -> ScriptBridge:
    """The job's script run confined (`ScriptBridge`), or, for `app: {external: true}`, the socket a trainer the
    site runs itself attaches to (`AttachedBridge`, in the job folder's `agent/`). With `only_metrics` (an
    inference job's declared returns), a value the script logs (`fl.log`) under any other name stays at the site.
    The script's answers are read into `buffers`."""
    from flctl.node.client.script_bridge import ScriptBridge

    def declared_only(name: str, value: float, step: int | None) -> None:
        if only_metrics is not None and name in only_metrics:
            reporter.metric(name, value, step)

    on_metric = reporter.metric if only_metrics is None else declared_only

    if app.external:
        from flctl.node.client.attach_file import AGENT_DIR
        from flctl.node.client.attached_bridge import AttachedBridge

        return AttachedBridge(agent_dir=job_dir / AGENT_DIR, site=site, job_id=job_id, on_output=reporter.line,
                              on_metric=on_metric, framework=app.params_framework(),
                              attach_timeout_s=app.attach_timeout_s, job_name=job_name)
    env = {**app.env, **read_placement(job_dir).script_env()}  # the GPUs the site gave it, whatever app.env says
    return ScriptBridge(workdir=job_dir / "job" / "app", command=list(app.command), env=env, site=site,
                        job_id=job_id, on_output=reporter.line, on_metric=on_metric, confine=confine,
                        framework=app.params_framework(), compat=app.compat, buffers=buffers)


def main(argv: list[str]) -> int:
    from flctl.node.client.script_bridge import ScriptError
    from flctl.node.jobs.job_spec import load_job

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    not_dumpable()  # its environ and memory hold the kit's key: unreadable by its (same-user) script
    try:
        job = SiteJob.from_argv(argv)
    except LinkError as exc:
        log.error("%s", exc)
        return 2
    kit_root, job_dir, job_id = job.kit_root, job.job_dir, job.job_id
    # the site daemon verified the kit at start; kit_for_job: the server itself while the site's relay is down
    # (failover: server)
    kit = kit_for_job(load_kit(kit_root, verify=False), job_dir)
    resources = _resources(kit.root)
    chan = site_channel(kit, resources.stream_window_bytes, site_transport(kit, resources))
    stub = pb_grpc.FederationStub(chan)
    reporter = Reporter(stub, job_id)
    reporter.start()
    loaded = load_job(job_dir / "job")
    spec = loaded.spec
    isolation = job_isolation(resources)
    reporter.line(f"isolation at {kit.info.name}: {isolation_note(isolation, resources)}")
    confine = Confinement(isolation, job_dir / "job", resources.data_paths, resources.job_env_allow)
    # an external trainer is the site's own process: nothing of the job's runs, so nothing to confine
    refusal = ("" if spec.app.external else isolation_refusal(confine, resources, kit.root, job_dir)) or \
        apply_placement(job_dir, reporter)
    filters = privacy_filters(kit.root, job_dir, job_id, spec.privacy_scope, declared_returns(loaded.args))
    codec = secure_codec(kit, job_dir, job_id, loaded.args)
    if refusal or isinstance(filters, str) or isinstance(codec, str):
        return _refuse(reporter, chan, f"{kit.info.name} refuses to run the job: "
                       f"{refusal or (filters if isinstance(filters, str) else codec)}")
    setup_notes(reporter, kit.info.name, filters, spec.app.compat)
    # one model-sized buffer kept for the job: each round's model is received into it, and once the script has
    # its copy, the script's answer is read into the same one (`model_buffers`: no new pages to zero each round)
    buffers = ModelBuffers(keep=1)
    bridge = make_bridge(spec.app, kit.info.name, job_dir, job_id, reporter, confine, spec.name,
                         only_metrics=filters.inference_returns if spec.workflow.type == "inference" else None,
                         buffers=buffers)

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        bridge.kill()
        reporter.line("job stopped at this site")
        reporter.flush()
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    bridge.start()
    if bridge.pid is not None:
        write_script_group(job_dir, bridge.pid)
    reporter.flush(status=SiteState.RUNNING)
    try:
        return _serve_tasks(ModelCalls(chan, resources.model_streams, buffers), job_id, bridge, reporter, filters,
                            codec, spec.transfer)
    except (ScriptError, FilterError, TaskError, SecAggError) as exc:
        bridge.kill()
        reporter.flush(status=SiteState.FAILED, error=str(exc))
        return 1
    except (grpc.RpcError, RuntimeError, ValueError) as exc:
        bridge.kill()
        message = f"lost the server: {exc.details() if isinstance(exc, grpc.RpcError) else exc}"
        reporter.flush(status=SiteState.FAILED, error=message)
        return 1
    finally:
        reporter.stop()
        chan.close()


if __name__ == "__main__":
    args: list[str] | None = sys.argv[1:]
    if args == [spare_process.SPARE_FLAG]:  # import what main() imports late, then wait for the daemon's job
        from flctl.node.client import script_bridge  # noqa: F401
        from flctl.node.jobs import job_spec  # noqa: F401

        args = spare_process.wait_for_job()
    if args is None:  # the daemon went away before handing over a job: nothing to clean up
        os._exit(0)
    sys.exit(main(args))
