"""The Federation service: what site daemons and site job processes call. Thin: checks identity, routes."""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from flctl.node.jobs.job_status import REPORTED, JobStatus, SiteState
from flctl.node.security.tls import CHUNK
from flctl.node.server import result_files
from flctl.node.server.context import ServerContext
from flctl.node.server.disk_guard import is_disk_full
from flctl.node.server.identity import caller, certified
from flctl.node.server.report_limits import ReportGate, ReportLimits
from flctl.node.server.scheduler import with_pending
from flctl.node.server.server_info import server_info
from flctl.node.server.store import JobRow
from flctl.node.server.task_board import INLINE_BYTES, PostedTask
from flctl.node.wire import chunk_codec, disk_space, model_parts, resources_serde
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc
from flctl.provisioner.pki import CertIdentity

log = logging.getLogger("flctl.server")

POLL_WAIT_S = 20.0
VERSION = "1"
Refusal = tuple[grpc.StatusCode, str]
DISK_FULL = "the server's disk is full; it takes no results until space is freed there"


def stream_file(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            yield block


class FederationService(pb_grpc.FederationServicer):
    def __init__(self, ctx: ServerContext, poke: Any, limits: ReportLimits) -> None:
        self._ctx = ctx
        self._poke = poke
        self._gate = ReportGate(limits)
        self._parts: dict[tuple[str, str, str], tuple[model_parts.Assembly, Path]] = {}  # results coming in parts
        self._parts_lock = threading.Lock()
        self._refused_resources: dict[str, str] = {}  # site -> why its last report of its resources was refused

    def _site(self, context: Any) -> CertIdentity:
        return caller(context, "site", self._ctx.revocations)[0]

    def Register(self, request: pb.RegisterRequest, context: Any) -> pb.RegisterReply:
        who, cert = caller(context, "site", self._ctx.revocations)
        self._ctx.store.touch_site(who.name, who.org, cert.not_valid_after_utc.timestamp(), list(request.running_jobs),
                                   register=True)
        self._ctx.isolation[who.name] = request.isolation
        self._note_resources(who.name, request)
        self._poke()
        return pb.RegisterReply(project=self._ctx.project, heartbeat_interval_s=self._ctx.heartbeat_interval_s)

    def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatReply:
        who, cert = caller(context, "site", self._ctx.revocations)  # once: a thousand sites heartbeat here
        store = self._ctx.store
        row = store.site(who.name)  # from memory
        was_online = row is not None and self._ctx.online(row)
        store.touch_site(who.name, who.org, cert.not_valid_after_utc.timestamp(), list(request.running_jobs))
        if who.kind == "relay":
            self._ctx.relayed[who.name] = list(request.children)
        self._note_resources(who.name, request)
        if not was_online:
            self._poke()
        running = set(self._ctx.runner.running())
        stop = [j for j in request.running_jobs if j not in running or who.name not in self._ctx.runner.sites_of(j)]
        self._reconcile(who.name, running)
        revocations = self._ctx.revocations
        crl = revocations.pem if revocations.number > request.crl_number else b""
        return pb.HeartbeatReply(stop_jobs=stop, crl_pem=crl)

    def _note_resources(self, site: str, request: pb.RegisterRequest | pb.HeartbeatRequest) -> None:
        """Keep what the site reports of its resources; a change frees or takes room for waiting jobs."""
        try:
            load = resources_serde.reported(request)
        except resources_serde.ResourcesRefused as exc:  # the site's own agent still places its jobs
            if self._refused_resources.get(site) != str(exc):
                log.warning("site %s: its report of its resources is refused (%s); it is taken as reporting none",
                            site, exc)
            self._refused_resources[site] = str(exc)
            load = None
        else:
            self._refused_resources.pop(site, None)
        if load is None:
            self._ctx.resources.pop(site, None)
            return
        before = self._ctx.resources.get(site)
        pending = self._ctx.pending.get(site)
        if pending:
            load = with_pending(load, pending, set(self._ctx.runner.running()), time.time())
        self._ctx.resources[site] = load
        if before is None or before.grants != load.grants:
            self._poke()

    def _reconcile(self, site: str, running: set[str]) -> None:
        """A site dropped from a running job as offline is heard from again: it takes part again. Its job process
        either survived (the network was cut: it goes on) or is gone (the site restarted: it is started anew)."""
        for job_id in running:
            if self._ctx.store.site_state(job_id, site) == SiteState.OFFLINE:
                self._ctx.runner.rejoin(job_id, site)

    def _dropped(self, job_id: str, site: str) -> bool:
        """Whether the job goes on without `site` (it went offline or failed). Its job process may still call
        (say, it outlived a network cut): what it sends is not taken, and its state is left for `_reconcile`."""
        state = self._ctx.store.site_state(job_id, site)
        return state is not None and state.is_dropped()

    def Commands(self, request: pb.Empty, context: Any) -> Iterator[pb.Command]:
        who = self._site(context)
        serial = caller(context, "site", self._ctx.revocations)[1].serial_number

        def active() -> bool:
            return bool(context.is_active()) and serial not in self._ctx.revocations

        for command in self._ctx.hub.stream(who.name, active, context.add_callback):
            if "start" in command:
                yield pb.Command(start=pb.StartJob(**command["start"]))
            else:
                yield pb.Command(stop=pb.StopJob(**command["stop"]))

    def FetchBundle(self, request: pb.JobRef, context: Any) -> Iterator[pb.Chunk]:
        who = self._site(context)
        if not self._ctx.board.takes_part(request.job_id, who.name):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no running job {request.job_id} for {who.name}")
        for block in stream_file(self._ctx.jobs_dir() / request.job_id / "bundle.zip"):
            yield pb.Chunk(data=block)

    def FetchTask(self, request: pb.TaskRequest, context: Any) -> Iterator[pb.TaskMessage | bytes]:
        """The site's next task: its header, then its model in chunks (chunk messages `chunk_codec` encoded). A site
        that asks for `streams` > 1 gets the model of a big task in parts (`model_parts`): this stream carries part 0,
        and the header says how many there are; `task_id` and `part` ask for another part of the task given."""
        who = self._site(context)
        if request.task_id:
            yield from self._task_part(request, who.name, context)
            return
        got = self._ctx.board.next_task(request.job_id, who.name, request.last_task_id, POLL_WAIT_S)
        if got is None:
            yield pb.TaskMessage(header=pb.TaskHeader())
            return
        if isinstance(got, JobStatus):
            yield pb.TaskMessage(header=pb.TaskHeader(done=True, status=got))
            return
        with contextlib.ExitStack() as stack:
            opened = _open_payload(got, stack)
            if opened is None:  # the job ended and its task went with it: the next poll says so
                yield pb.TaskMessage(header=pb.TaskHeader())
                return
            payload, mapped = opened
            parts = 1 if got.data is not None else model_parts.streams_for(len(payload), request.streams)
            if not self._dropped(request.job_id, who.name):
                self._ctx.store.set_site_state(request.job_id, who.name, SiteState.WORKING, got.round)
            yield pb.TaskMessage(header=pb.TaskHeader(task_id=got.task_id, kind=got.kind, round=got.round,
                                                      meta_json=got.meta_json, size=len(payload),
                                                      timeout_s=got.timeout_s, parts=parts))
            begin, end = model_parts.ranges(len(payload), parts, CHUNK)[0]
            yield from _chunks(payload, mapped, begin, end)
            self._ctx.traffic.add_sent(end - begin)

    def _task_part(self, request: pb.TaskRequest, site: str, context: Any) -> Iterator[bytes]:
        """Part `request.part` of the model of task `request.task_id`, the site's current task: its chunks alone."""
        task = self._ctx.board.open_task(request.job_id, site, request.task_id)
        if task is None or task.data is not None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"task {request.task_id!r} is not {site}'s open task in job "
                                                     f"{request.job_id!r}, or its model comes in one part")
        with contextlib.ExitStack() as stack:
            opened = _open_payload(task, stack)  # type: ignore[arg-type]
            if opened is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"task {request.task_id!r} ended")
            payload, mapped = opened  # type: ignore[misc]
            parts = model_parts.streams_for(len(payload), request.streams)
            problem = model_parts.check_part(len(payload), request.part, parts)
            if problem:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            begin, end = model_parts.ranges(len(payload), parts, CHUNK)[request.part]
            yield from _chunks(payload, mapped, begin, end)
            self._ctx.traffic.add_sent(end - begin)

    def SubmitResult(self, request_iterator: Iterator[pb.ResultMessage], context: Any) -> pb.Ack:
        """A site's answer to a task it was given. Anything malformed, misaddressed or unusable is refused with a
        status that says why, before it reaches the workflow; the task stays open for a proper answer."""
        who = self._site(context)
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a result starts with its header")
        head = first.header  # type: ignore[union-attr]
        board = self._ctx.board
        if not board.takes_part(head.job_id, who.name):
            context.abort(grpc.StatusCode.NOT_FOUND, f"{who.name} takes part in no running job {head.job_id!r}")
        if not board.was_given(head.job_id, who.name, head.task_id):
            # Not an error: a site's job process that outlived a server restart may answer the old run's task.
            return pb.Ack(message=f"result ignored: task {head.task_id!r} was not given to {who.name} in job "
                                  f"{head.job_id} since the server started")
        if head.failed:
            if board.answer(head.job_id, who.name, head.task_id):
                self._ctx.runner.failure(head.job_id, who.name, head.error or "failed", head.task_id)
            return pb.Ack(message="failure recorded")
        meta = _json_object(head.meta_json or "{}")
        if meta is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the result's meta_json is not a JSON object")
        if head.size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the result's size {head.size} is negative")
        if head.size > self._ctx.max_model_bytes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"result of {head.size} bytes is over the limit")
        if not board.expects(head.job_id, who.name, head.task_id):
            return pb.Ack(message="late or duplicate result ignored")
        if self._ctx.disk.full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, DISK_FULL)
        if self._dropped(head.job_id, who.name):
            return pb.Ack(message=f"result ignored: {who.name} was dropped from the job until its daemon is back")
        results = self._ctx.jobs_dir() / head.job_id / "results"
        path = results / f"{who.name}-{head.task_id}.safetensors"  # both ids are the server's own, checked above
        tmp = path.with_name("." + path.name + ".part")
        if head.parts > 1:
            return self._result_part(head, who.name, request_iterator, meta, tmp, context)  # type: ignore[arg-type]
        payload: Path | bytes = path
        try:
            if head.size <= INLINE_BYTES:  # a small model (a thousand sites' answers) never touches the disk
                payload, refused = _receive_small(request_iterator, head.size)
            else:
                refused = _receive(request_iterator, head.size, tmp)
            if refused is not None:
                if refused[1] == DISK_FULL:
                    self._ctx.disk.release()  # running jobs fail, saying why
                context.abort(*refused)
            if not board.answer(head.job_id, who.name, head.task_id):
                return pb.Ack(message="late or duplicate result ignored")
            if self._dropped(head.job_id, who.name):  # went offline while the result was arriving
                return pb.Ack(message=f"result ignored: {who.name} was dropped from the job")
            if payload is path:
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return self._accept(head, who.name, payload, meta)  # type: ignore[arg-type]

    def _accept(self, head: pb.ResultHeader, site: str, payload: Path | bytes, meta: dict[str, Any]) -> pb.Ack:
        self._ctx.traffic.add_received(head.size)
        self._ctx.runner.result(head.job_id, site, head.task_id, payload, int(head.num_examples), dict(head.metrics),
                                meta)
        return pb.Ack(message="accepted")

    def _result_part(self, head: pb.ResultHeader, site: str, messages: Iterator[pb.ResultMessage],
                     meta: dict[str, Any], tmp: Path, context: Any) -> pb.Ack:
        """One part of a result sent over several streams (`model_parts`): written where it belongs in `tmp`; the
        call that brings the last part checks the whole and hands it on as `SubmitResult` does. A part sent again
        (the site retrying) is written again, the same bytes; parts whose headers disagree are refused."""
        problem = model_parts.check_part(head.size, head.part, head.parts)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the result's {problem}")
        key = (head.job_id, site, head.task_id)
        with self._parts_lock:
            self._prune_parts()
            if key not in self._parts:  # the first part: over a spare's pages, before any part opens the file
                result_files.take_spare(tmp.parent, head.size, tmp)
            assembly, _ = self._parts.setdefault(key, (model_parts.Assembly(head.size, head.parts), tmp))
        if not assembly.matches(head.size, head.parts):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"part {head.part} of the result says {head.parts} parts of {head.size} bytes, but an "
                          f"earlier part said {assembly.parts} parts of {assembly.size} bytes")
        begin, end = model_parts.ranges(head.size, head.parts, CHUNK)[head.part]
        refused = _receive_part(messages, tmp, head.part, begin, end)
        if refused is not None:
            if refused[1] == DISK_FULL:
                self._ctx.disk.release()
            context.abort(*refused)
        if not assembly.finish(head.part):
            return pb.Ack(message=f"part {head.part} of {head.parts} received")
        with self._parts_lock:
            self._parts.pop(key, None)
        path = tmp.with_name(tmp.name[1:-len(".part")])
        try:
            refused = _unusable(lambda tensors: tensors.check_file(tmp))
            if refused is not None:
                context.abort(*refused)
            if not self._ctx.board.answer(head.job_id, site, head.task_id):
                return pb.Ack(message="late or duplicate result ignored")
            if self._dropped(head.job_id, site):
                return pb.Ack(message=f"result ignored: {site} was dropped from the job")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return self._accept(head, site, path, meta)

    def _prune_parts(self) -> None:
        """Forget the parts of results no longer awaited (the task answered, withdrawn or its job over), and their
        files; `_parts_lock` is held."""
        for key, (_, tmp) in list(self._parts.items()):
            if not self._ctx.board.expects(*key):
                del self._parts[key]
                tmp.unlink(missing_ok=True)

    def ServerInfo(self, request: pb.Empty, context: Any) -> pb.ServerInfoReply:
        """The server's clock and versions, to any certificate of the project that is not revoked."""
        who = certified(context)
        caller(context, who.kind if who else "site", self._ctx.revocations)  # aborts: no certificate, or revoked
        return server_info(self._ctx.project)

    def Report(self, request: pb.ReportRequest, context: Any) -> pb.Ack:
        who = self._site(context)
        store = self._ctx.store
        job = store.get_job(request.job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        status = SiteState.parse(request.status) if request.status else None  # None: logs and metrics only
        refusal = _report_refusal(who.name, job, status, request.status)  # type: ignore[arg-type]
        if refusal is not None:
            context.abort(*refusal)  # nothing of it is stored
        lines, log_note = self._gate.lines(request.job_id, who.name, [(line.time, line.line) for line in request.logs])
        store.add_logs(request.job_id, who.name, lines)
        metrics, metric_note = self._gate.metrics(request.job_id, who.name, list(request.metrics))
        notes = [(time.time(), note) for note in (log_note, metric_note) if note]
        store.add_logs(request.job_id, "server", notes)
        if metrics:
            site_round = job.site_states[who.name][1]  # type: ignore[union-attr]
            for metric in metrics:
                store.add_metrics(request.job_id, who.name, site_round,
                                  [(self._gate.cut(metric.name), metric.value,
                                    metric.step if metric.has_step else None)],
                                  metric.time or time.time())
        already_failed = job.site_states[who.name][0] == SiteState.FAILED  # type: ignore[union-attr]
        if status == SiteState.FAILED and not already_failed:
            error = request.error or "the site's job process failed"
            if job.status == JobStatus.RUNNING:  # type: ignore[union-attr]
                self._ctx.runner.failure(request.job_id, who.name, error)
            else:  # the job already ended (say, its results were refused then): no event after its last one
                store.set_site_state(request.job_id, who.name, SiteState.FAILED, error=error)
        elif status in (SiteState.FINISHED, SiteState.RUNNING):
            store.set_site_state(request.job_id, who.name, status)
        return pb.Ack()


def _report_refusal(site: str, job: JobRow, status: SiteState | None, said: str) -> Refusal | None:
    """Why `site` may not report `status` (with logs, metrics) for `job`, or None. A site changes only its own part,
    only in a job it takes part in, and only while that part runs: once the job ended it may still report how its
    part ended (its last lines, finished or failed), once; nothing after that."""
    if site not in job.site_states:
        return grpc.StatusCode.PERMISSION_DENIED, f"{site} takes no part in job {job.id}: a site reports only its own"
    if status is not None and status not in REPORTED:
        return grpc.StatusCode.INVALID_ARGUMENT, f"unknown status {said!r}; a site reports one of running, " \
                                                 "finished or failed"
    if job.status.is_active():
        return None
    own = job.site_states[site][0]
    if own in (SiteState.FINISHED, SiteState.FAILED) or status == SiteState.RUNNING:
        return grpc.StatusCode.FAILED_PRECONDITION, f"job {job.id} ended ({job.status}) and {site}'s part in it " \
                                                    f"is over ({own}); its state no longer changes"
    return None


def add_to_server(service: pb_grpc.FederationServicer, server: grpc.Server) -> None:
    """Register `service` as the generated `add_FederationServicer_to_server` does, except that the model chunks
    FetchTask sends and SubmitResult receives go through `flctl.node.wire.chunk_codec`, without protobuf's copies."""
    descriptor = pb.DESCRIPTOR.services_by_name["Federation"]
    kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    handlers = {}
    for method in descriptor.methods:
        request, response = getattr(pb, method.input_type.name), getattr(pb, method.output_type.name)
        handlers[method.name] = kinds[(method.client_streaming, method.server_streaming)](
            getattr(service, method.name),
            request_deserializer=chunk_codec.decoder(request) if method.name == "SubmitResult" else request.FromString,
            response_serializer=chunk_codec.serialize if method.name == "FetchTask" else response.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
    server.add_registered_method_handlers(descriptor.full_name, handlers)


def _open_payload(task: PostedTask, stack: contextlib.ExitStack) -> tuple[memoryview, mmap.mmap | None] | None:
    """A task's model: its bytes in memory, or its file mapped (closed with `stack`); None when the file is gone."""
    if task.data is not None:  # a small model, read once for every site
        return memoryview(task.data), None
    try:
        handle = stack.enter_context(open(task.payload, "rb"))  # noqa: SIM115  (closed with the stack)
    except FileNotFoundError:
        return None
    if os.fstat(handle.fileno()).st_size == 0:
        return memoryview(b""), None
    mapped = stack.enter_context(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
    payload = memoryview(mapped)
    stack.callback(payload.release)  # before the map closes
    return payload, mapped


def _chunks(payload: memoryview, mapped: mmap.mmap | None, begin: int, end: int) -> Iterator[bytes]:
    """Bytes [begin, end) of `payload` as chunk messages; a mapped file's pages leave this process once sent (they
    stay in the page cache, for the next site)."""
    for start in range(begin, end, CHUNK):
        stop = min(end, start + CHUNK)
        yield chunk_codec.encode(payload[start:stop])
        if mapped is not None:
            mapped.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _receive(messages: Iterator[pb.ResultMessage], size: int, tmp: Path) -> Refusal | None:
    """Write a result's chunks to `tmp` and check it is a model `decode` accepts; what to refuse it with, or None."""
    received = 0
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        # over a spare's pages already in the page cache when there is one; else a new file
        reused = result_files.take_spare(tmp.parent, size, tmp)
        with open(tmp, "r+b" if reused else "wb") as out:
            disk_space.reserve(out.fileno(), size)  # a full disk refuses the result before its first byte
            for message in messages:
                received += len(message.chunk)
                if received > size:
                    return grpc.StatusCode.INVALID_ARGUMENT, "result is larger than its header says"
                out.write(message.chunk)
    except OSError as exc:
        if is_disk_full(exc):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, DISK_FULL
        return grpc.StatusCode.INTERNAL, f"the server could not store the result: {exc.strerror or exc}"
    if received != size:
        return grpc.StatusCode.INVALID_ARGUMENT, f"result ended after {received} of {size} bytes"
    return _unusable(lambda tensors: tensors.check_file(tmp))


def _receive_part(messages: Iterator[pb.ResultMessage], tmp: Path, part: int, begin: int, end: int) -> Refusal | None:
    """Write part `part` of a result, bytes [begin, end), into `tmp` where they belong; what to refuse it with, or
    None. The other parts' streams write the same file at once, each its own range."""
    at = begin
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            disk_space.reserve(fd, end - begin, begin)
            for message in messages:
                chunk = message.chunk
                if at + len(chunk) > end:
                    return grpc.StatusCode.INVALID_ARGUMENT, f"part {part} of the result is larger than " \
                                                             f"{end - begin} bytes"
                view = memoryview(chunk)
                while view.nbytes:
                    wrote = os.pwrite(fd, view, at)
                    at += wrote
                    view = view[wrote:]
        finally:
            os.close(fd)
    except OSError as exc:
        if is_disk_full(exc):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, DISK_FULL
        return grpc.StatusCode.INTERNAL, f"the server could not store the result: {exc.strerror or exc}"
    if at != end:
        return grpc.StatusCode.INVALID_ARGUMENT, f"part {part} of the result ended after {at - begin} of " \
                                                 f"{end - begin} bytes"
    return None


def _receive_small(messages: Iterator[pb.ResultMessage], size: int) -> tuple[bytes, Refusal | None]:
    """A result of at most INLINE_BYTES, in memory, checked like `_receive` checks one on disk."""
    data = bytearray()
    for message in messages:
        data += message.chunk
        if len(data) > size:
            return b"", (grpc.StatusCode.INVALID_ARGUMENT, "result is larger than its header says")
    if len(data) != size:
        return b"", (grpc.StatusCode.INVALID_ARGUMENT, f"result ended after {len(data)} of {size} bytes")
    return bytes(data), _unusable(lambda tensors: tensors.parse_header(data, size))


def _unusable(check: Callable[[ModuleType], object]) -> Refusal | None:
    """The refusal for a result that `check(tensors)` finds no model `decode` accepts, or None."""
    try:
        from flctl.node.wire import tensors  # numpy and safetensors: not imported until a result comes

        check(tensors)
    except ValueError as exc:
        return grpc.StatusCode.INVALID_ARGUMENT, f"the result is not a usable model: {exc}"
    return None
