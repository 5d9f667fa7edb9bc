"""A site job process's model traffic: a task's model in from the server, an answer's model out, each over one
stream or several at once (`model_streams` in the site's `local/resources.yml`; see `flctl.node.wire.model_parts`).

Chunks go through `flctl.node.wire.chunk_codec`: read as views into what gRPC delivered and copied once, straight
into the one buffer the model is received into (not zeroed first: a zeroed 100 MB bytearray cost about 0.16 s
more here; and kept from round to round, `flctl.node.wire.model_buffers`, so its pages are not faulted in and
zeroed by the kernel again each time); written in one copy each. Each transfer's time is logged
(`job_process.log`: `task ...: model received, 100.0 MB in 0.25 s (400 MB/s, 1 stream)`), which is what
`bench/transfer.py` reports.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from flctl.node.client import api_wire as wire
from flctl.node.process.backoff import Backoff
from flctl.node.security.tls import CHUNK
from flctl.node.wire import chunk_codec, model_parts, tensors
from flctl.node.wire.model_buffers import ModelBuffers
from flctl.node.wire.proto import flctl_pb2 as pb

log = logging.getLogger("flctl.site.job")
RETRY_FOR_S = 120.0
PART_TIMEOUT_S = 600.0
T = TypeVar("T")


class ModelCalls:
    """FetchTask and SubmitResult as the generated stub makes them, except that the model's chunks go through
    `flctl.node.wire.chunk_codec`; `streams`: how many streams each model may go over; `buffers`: what each task's
    model is received into (`flctl.node.wire.model_buffers`; default: a new buffer each time)."""

    def __init__(self, chan: grpc.Channel, streams: int = 1, buffers: ModelBuffers | None = None) -> None:
        service = "/" + pb.DESCRIPTOR.services_by_name["Federation"].full_name
        self.fetch = chan.unary_stream(f"{service}/FetchTask", request_serializer=pb.TaskRequest.SerializeToString,
                                       response_deserializer=chunk_codec.decoder(pb.TaskMessage))
        self.submit = chan.stream_unary(f"{service}/SubmitResult", request_serializer=chunk_codec.serialize,
                                        response_deserializer=pb.Ack.FromString)
        self.streams = streams
        self.buffers = buffers or ModelBuffers(keep=0)


def retrying(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call an RPC, retrying with backoff while the server is unreachable (up to RETRY_FOR_S)."""
    backoff = Backoff()
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            return call(*args, **kwargs)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or \
                    time.monotonic() > deadline:
                raise
            time.sleep(backoff.next_delay())


def _all_at_once(work: list[Callable[[], None]]) -> None:
    """Run `work[0]` here and the rest in threads, all at once; the first error of any is raised once all ended."""
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001  (raised again below, in the caller's thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in work[1:]]
    for thread in threads:
        thread.start()
    run(work[0])
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _fill(messages: Iterator[Any], data: memoryview, begin: int, end: int, part: int) -> None:
    """Copy the chunks of `messages` into data[begin:end], which they must fill exactly."""
    at = begin
    for message in messages:
        chunk = message.chunk
        if at + len(chunk) > end:
            raise RuntimeError(f"part {part} of the task's model is larger than the {end - begin} bytes its header "
                               "says")
        data[at:at + len(chunk)] = chunk
        at += len(chunk)
    if at != end:
        raise RuntimeError(f"part {part} of the task's model ended after {at - begin} of {end - begin} bytes")


def fetch_task(calls: ModelCalls, job_id: str, last: str) -> tuple[pb.TaskHeader, memoryview]:
    """The next task's header and its params (safetensors bytes, received straight into one buffer): part 0 on
    the polling stream, the others (when the header says the model comes in parts) on streams of their own."""
    def once() -> tuple[pb.TaskHeader, memoryview]:
        messages = calls.fetch(pb.TaskRequest(job_id=job_id, last_task_id=last, streams=calls.streams), timeout=60)
        first = next(messages, None)
        if first is None or not first.HasField("header"):
            raise RuntimeError("the server sent a task without a header")
        header: pb.TaskHeader = first.header
        started = time.perf_counter()
        data = calls.buffers.take(max(0, header.size))
        if not header.task_id:
            for _ in messages:
                raise RuntimeError("the server sent a model with no task")
            return header, data
        if header.parts == 0 and calls.streams > 1:
            # A peer that does not cut models into parts (a relay, a server from before them) takes none either:
            # its answers go over one stream too.
            log.info("task %s: the server sends no parts, so answers go over one stream", header.task_id)
            calls.streams = 1
        parts = max(1, header.parts)
        problem = model_parts.check_part(header.size, 0, parts) if parts > 1 else ""
        if problem:
            raise RuntimeError(f"the server's task header is wrong: {problem}")
        cut = model_parts.ranges(len(data), parts, CHUNK)

        def part(index: int) -> Callable[[], None]:
            def fetch() -> None:
                if index == 0:
                    _fill(messages, data, *cut[0], 0)
                    return
                more = calls.fetch(pb.TaskRequest(job_id=job_id, task_id=header.task_id, part=index, streams=parts),
                                   timeout=PART_TIMEOUT_S)
                _fill(more, data, *cut[index], index)
            return fetch

        try:
            _all_at_once([part(i) for i in range(parts)])
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            log.info("task %s was withdrawn while its model came in parts: %s", header.task_id, exc.details())
            return pb.TaskHeader(), tensors.empty_buffer(0)  # no task: the next poll says what there is
        _logged("model received", header.task_id, len(data), time.perf_counter() - started, parts)
        return header, data

    result: tuple[pb.TaskHeader, memoryview] = retrying(once)
    return result


def submit_result(calls: ModelCalls, job_id: str, task_id: str, answer: wire.Result, payload: wire.Payload) -> None:
    """Send the script's answer: its header, then its params (safetensors bytes) in chunks; a big one in parts on
    streams of their own, each with the header (saying which part it is)."""
    view = memoryview(payload) if not isinstance(payload, memoryview) else payload
    parts = model_parts.streams_for(len(view), calls.streams)
    header = pb.ResultHeader(job_id=job_id, task_id=task_id, num_examples=answer.num_examples,
                             metrics={k: float(v) for k, v in answer.metrics.items()},
                             meta_json=json.dumps(answer.meta, default=str), size=len(view),
                             parts=parts if parts > 1 else 0)
    cut = model_parts.ranges(len(view), parts, CHUNK)

    def messages(index: int) -> Iterator[pb.ResultMessage | bytes]:
        part_header = pb.ResultHeader()
        part_header.CopyFrom(header)
        part_header.part = index
        yield pb.ResultMessage(header=part_header)
        begin, end = cut[index]
        for start in range(begin, end, CHUNK):
            yield chunk_codec.encode(view[start:min(end, start + CHUNK)])

    def send(index: int) -> Callable[[], None]:
        return lambda: calls.submit(messages(index), timeout=600)

    started = time.perf_counter()
    retrying(lambda: _all_at_once([send(i) for i in range(parts)]))
    _logged("answer sent", task_id, len(view), time.perf_counter() - started, parts)


def _logged(what: str, task_id: str, size: int, seconds: float, parts: int) -> None:
    mb = size / 1e6
    rate = f"{mb / seconds:.0f} MB/s" if seconds > 0 else "instant"
    log.info("task %s: %s, %.1f MB in %.3f s (%s, %d stream%s)", task_id, what, mb, seconds, rate, parts,
             "" if parts == 1 else "s")
