"""Caps on the calls in progress at the server: per peer (a certificate's name and kind) and overall, for every call
and for streaming calls alone. A call over a cap is refused at once with RESOURCE_EXHAUSTED, naming the cap and the
`local/resources.yml` key that sets it, before it can hold a thread for long.

A gRPC server interceptor: it wraps each method's handler, since who is calling is known only from the call's
context (its TLS peer), which the handler gets. gRPC's own `maximum_concurrent_rpcs` (the daemon sets it to the
thread pool's size) is the hard bound behind these: it refuses, with gRPC's own words, only the calls that arrive
while the pool is already full of calls that this interceptor took or is refusing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from flctl.node.server.identity import certified

Peer = tuple[str, str]
"""(kind, name) of a certificate: a site and an admin of the same name are two peers."""


@dataclass(frozen=True)
class Caps:
    max_calls: int
    max_streams: int
    max_calls_per_peer: int
    max_streams_per_peer: int


class _Ticket:
    """One admitted call's place in the counts, given back exactly once (by whichever comes first: the handler
    returning or its stream ending, or gRPC's end-of-call callback)."""

    def __init__(self, caps: CallCaps, peer: Peer, streaming: bool) -> None:
        self._caps, self._peer, self._streaming = caps, peer, streaming
        self._held = True

    def release(self) -> None:
        self._caps._release(self)


class CallCaps(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self._lock = threading.Lock()
        self._calls: Counter[Peer] = Counter()
        self._streams: Counter[Peer] = Counter()
        self._all_calls = 0
        self._all_streams = 0
        self._made: dict[str, tuple[Any, Any]] = {}

    def in_progress(self) -> tuple[int, int]:
        """(calls, streams) counted now, from everyone."""
        with self._lock:
            return self._all_calls, self._all_streams

    def _refusal(self, peer: Peer, streaming: bool) -> str | None:
        """Why a new call from `peer` is refused now, or None; called under the lock."""
        caps, name = self.caps, peer[1] or "an unnamed peer"
        if self._calls[peer] >= caps.max_calls_per_peer:
            return (f"too many concurrent calls from {name} (cap {caps.max_calls_per_peer}, local/resources.yml "
                    "max_calls_per_peer); let some finish, or ask the server's operator to raise the cap")
        if streaming and self._streams[peer] >= caps.max_streams_per_peer:
            return (f"too many concurrent streams from {name} (cap {caps.max_streams_per_peer}, local/resources.yml "
                    "max_streams_per_peer); end some (watches, log follows, downloads), or ask the server's operator "
                    "to raise the cap")
        if self._all_calls >= caps.max_calls:
            return (f"the server is serving its cap of {caps.max_calls} concurrent calls (local/resources.yml "
                    "max_calls); try again shortly")
        if streaming and self._all_streams >= caps.max_streams:
            return (f"the server is serving its cap of {caps.max_streams} concurrent streams (local/resources.yml "
                    "max_streams); try again shortly")
        return None

    def _admit(self, context: Any, streaming: bool) -> _Ticket:
        """Count a new call in, or abort it with RESOURCE_EXHAUSTED and the reason."""
        who = certified(context)
        peer = ("", "") if who is None else (who.kind, who.name)
        with self._lock:
            refusal = self._refusal(peer, streaming)
            if refusal is None:
                self._calls[peer] += 1
                self._all_calls += 1
                if streaming:
                    self._streams[peer] += 1
                    self._all_streams += 1
        if refusal is not None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        ticket = _Ticket(self, peer, streaming)
        if not context.add_callback(ticket.release):  # the call already ended
            ticket.release()
        return ticket

    def _release(self, ticket: _Ticket) -> None:
        with self._lock:
            if not ticket._held:
                return
            ticket._held = False
            peer = ticket._peer
            self._all_calls -= 1
            self._calls[peer] -= 1
            if not self._calls[peer]:
                del self._calls[peer]
            if ticket._streaming:
                self._all_streams -= 1
                self._streams[peer] -= 1
                if not self._streams[peer]:
                    del self._streams[peer]

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        made = self._made.get(details.method)
        if made is not None and made[0] is handler:  # each method's handler is wrapped once
            return made[1]
        wrapped = self._wrap(handler)
        self._made[details.method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Any) -> Any:
        streaming = bool(handler.request_streaming or handler.response_streaming)
        if handler.response_streaming:
            behavior = handler.unary_stream or handler.stream_stream
            wrapped: Callable[[Any, Any], Any] = self._streamed(behavior)
            make = grpc.stream_stream_rpc_method_handler if handler.request_streaming \
                else grpc.unary_stream_rpc_method_handler
        else:
            behavior = handler.unary_unary or handler.stream_unary
            wrapped = self._answered(behavior, streaming)
            make = grpc.stream_unary_rpc_method_handler if handler.request_streaming \
                else grpc.unary_unary_rpc_method_handler
        return make(wrapped, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)

    def _answered(self, behavior: Callable[[Any, Any], Any], streaming: bool) -> Callable[[Any, Any], Any]:
        """A handler with one answer, counted while it runs."""

        def run(request: Any, context: Any) -> Any:
            ticket = self._admit(context, streaming)
            try:
                return behavior(request, context)
            finally:
                ticket.release()

        return run

    def _streamed(self, behavior: Callable[[Any, Any], Iterator[Any]]) -> Callable[[Any, Any], Iterator[Any]]:
        """A handler that streams its answer, counted until its stream ends."""

        def run(request: Any, context: Any) -> Iterator[Any]:
            ticket = self._admit(context, True)
            try:
                responses = behavior(request, context)
            except BaseException:
                ticket.release()
                raise
            return _held(responses, ticket)

        return run


def _held(responses: Iterator[Any], ticket: _Ticket) -> Iterator[Any]:
    try:
        yield from responses
    finally:
        ticket.release()
