"""The Federation service a relay offers its sites: what the server offers them, answered from the relay.

A site under a relay runs unchanged: it registers, heartbeats, takes commands, fetches bundles and tasks and submits
results as with the server. Identity is its certificate, checked here as the server checks it (a site's or a lower
relay's, not revoked); it takes part only in the jobs its relay started it on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from flctl.node.jobs.job_status import JobStatus, SiteState
from flctl.node.jobs.tasks import TaskResult
from flctl.node.relay.combine import site_metrics
from flctl.node.security.tls import CHUNK
from flctl.node.server.identity import caller, certified
from flctl.node.server.server_info import server_info
from flctl.node.wire import chunk_codec
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc
from flctl.provisioner.pki import CertIdentity

if TYPE_CHECKING:
    from flctl.node.relay.daemon import Relay

POLL_WAIT_S = 20.0


class RelayService(pb_grpc.FederationServicer):
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def _who(self, context: Any) -> tuple[CertIdentity, float]:
        who, cert = caller(context, "site", self._relay.revocations)
        return who, cert.not_valid_after_utc.timestamp()

    def Register(self, request: pb.RegisterRequest, context: Any) -> pb.RegisterReply:
        who, not_after = self._who(context)
        self._relay.heard(who, not_after, list(request.running_jobs), request.isolation,
                          resources=request.resources if request.HasField("resources") else None)
        return pb.RegisterReply(project=self._relay.kit.info.project, heartbeat_interval_s=self._relay.heartbeat_s)

    def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatReply:
        who, not_after = self._who(context)
        self._relay.heard(who, not_after, list(request.running_jobs), None, list(request.children),
                          request.resources if request.HasField("resources") else None)
        running = self._relay.running_jobs()
        stop = [j for j in request.running_jobs
                if j not in running or not self._relay.board.takes_part(j, who.name)]
        revocations = self._relay.revocations
        crl = revocations.pem if revocations.number > request.crl_number else b""
        return pb.HeartbeatReply(stop_jobs=stop, crl_pem=crl)

    def Commands(self, request: pb.Empty, context: Any) -> Iterator[pb.Command]:
        who, _ = self._who(context)
        serial = caller(context, "site", self._relay.revocations)[1].serial_number

        def active() -> bool:
            return bool(context.is_active()) and serial not in self._relay.revocations

        for command in self._relay.hub.stream(who.name, active, context.add_callback):
            if "start" in command:
                yield pb.Command(start=command["start"])
            else:
                yield pb.Command(stop=pb.StopJob(**command["stop"]))

    def FetchBundle(self, request: pb.JobRef, context: Any) -> Iterator[pb.Chunk]:
        who, _ = self._who(context)
        job = self._relay.jobs.get(request.job_id)
        if job is None or not self._relay.board.takes_part(request.job_id, who.name):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no running job {request.job_id} for {who.name}")
        data = job.bundle  # type: ignore[union-attr]
        for start in range(0, len(data), CHUNK):
            yield pb.Chunk(data=data[start:start + CHUNK])

    def FetchTask(self, request: pb.TaskRequest, context: Any) -> Iterator[pb.TaskMessage | bytes]:
        who, _ = self._who(context)
        got = self._relay.board.next_task(request.job_id, who.name, request.last_task_id, POLL_WAIT_S)
        if got is None:
            yield pb.TaskMessage(header=pb.TaskHeader())
            return
        if isinstance(got, JobStatus):
            yield pb.TaskMessage(header=pb.TaskHeader(done=True, status=got))
            return
        payload = memoryview(got.data or b"")
        yield pb.TaskMessage(header=pb.TaskHeader(task_id=got.task_id, kind=got.kind, round=got.round,
                                                  meta_json=got.meta_json, size=len(payload),
                                                  timeout_s=got.timeout_s))
        for start in range(0, len(payload), CHUNK):
            yield chunk_codec.encode(payload[start:start + CHUNK])

    def SubmitResult(self, request_iterator: Iterator[pb.ResultMessage], context: Any) -> pb.Ack:
        who, _ = self._who(context)
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a result starts with its header")
        head = first.header  # type: ignore[union-attr]
        board = self._relay.board
        job = self._relay.jobs.get(head.job_id)
        if job is None or not board.takes_part(head.job_id, who.name):
            context.abort(grpc.StatusCode.NOT_FOUND, f"{who.name} takes part in no running job {head.job_id!r}")
        if not board.expects(head.job_id, who.name, head.task_id):
            return pb.Ack(message="late or duplicate result ignored")
        if head.failed:
            if board.answer(head.job_id, who.name, head.task_id):
                job.answered(who.name, head.task_id, head.error or "failed")  # type: ignore[union-attr]
            return pb.Ack(message="failure recorded")
        try:
            meta = json.loads(head.meta_json or "{}")
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the result's meta_json is not a JSON object")
        if head.size < 0 or head.size > self._relay.max_model_bytes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"result of {head.size} bytes is refused (the relay "
                                                            f"takes up to {self._relay.max_model_bytes})")
        data = bytearray()
        for message in request_iterator:
            data += message.chunk
            if len(data) > head.size:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "result is larger than its header says")
        if len(data) != head.size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"result ended after {len(data)} of {head.size} bytes")
        try:
            from flctl.node.wire import quantize

            # made whole as the server makes a quantized answer whole (job.yml `transfer:`): the relay adds values,
            # not int8 codes and their scales; its one answer goes up unquantized (the mean of what its sites sent)
            params = dict(quantize.decode(data)) if data else {}
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the result is not a usable model: {exc}")
        if not board.answer(head.job_id, who.name, head.task_id):
            return pb.Ack(message="late or duplicate result ignored")
        job.answered(who.name, head.task_id, TaskResult(who.name, params, int(head.num_examples),  # type: ignore[union-attr]
                                                   dict(head.metrics), meta))
        return pb.Ack(message="accepted")

    def Report(self, request: pb.ReportRequest, context: Any) -> pb.Ack:
        """A site's logs and metrics go up as the relay's own, each line and metric named by the site; its status
        stays here (a failed site is one answer fewer; the relay's own status is the relay's)."""
        who, _ = self._who(context)
        job = self._relay.jobs.get(request.job_id)
        if job is None or who.name not in job.sites:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{who.name} takes no part in job {request.job_id} at this relay")
        logs = [pb.LogLine(time=line.time, line=f"[{who.name}] {line.line}") for line in request.logs]
        metrics = [pb.Metric(name=name, value=value, step=m.step, has_step=m.has_step, time=m.time)
                   for m in request.metrics for name, value in site_metrics({m.name: m.value}, who.name).items()]
        if request.status == SiteState.FAILED:
            error = request.error or "its job process failed"
            job.site_failed(who.name, error)  # type: ignore[union-attr]
            logs.append(pb.LogLine(time=time.time(), line=f"[{who.name}] failed: {error}"))
        self._relay.report_up(request.job_id, logs, metrics)
        return pb.Ack()

    def ServerInfo(self, request: pb.Empty, context: Any) -> pb.ServerInfoReply:
        who = certified(context)
        caller(context, who.kind if who else "site", self._relay.revocations)
        return server_info(self._relay.kit.info.project)
