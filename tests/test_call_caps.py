"""The server's caps on calls in progress (node/server/call_caps.py), on a real gRPC server over mutual TLS with a
provisioned project's certificates: per peer and overall, for calls and for streams, each refused at once with
RESOURCE_EXHAUSTED naming the cap and its key, and every count given back when calls end or are cancelled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from flctl.node.config.kit import load_kit
from flctl.node.security.tls import channel, server_credentials
from flctl.node.server.call_caps import CallCaps, Caps

from .federation import Federation, make_federation

WAIT_S = 30.0


@dataclass
class Holding:
    """A server whose methods hold each call until `release` is set; `entered` counts calls that got in."""
    caps: CallCaps
    fed: Federation
    release: threading.Event = field(default_factory=threading.Event)
    entered: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    channels: list[grpc.Channel] = field(default_factory=list)
    made: list[Any] = field(default_factory=list)
    """Every call made: one no longer referenced would be cancelled."""

    def stub(self, kit: str, streaming: bool) -> Any:
        chan = channel(load_kit(self.fed.kit(kit), verify=False))
        self.channels.append(chan)
        if streaming:
            return chan.unary_stream("/test.Hold/Stream")
        return chan.unary_unary("/test.Hold/Call")

    def calls(self, kit: str, count: int, streaming: bool = False) -> list[Any]:
        stub = self.stub(kit, streaming)
        calls = [stub(b"", timeout=WAIT_S * 2) if streaming else stub.future(b"", timeout=WAIT_S * 2)
                 for _ in range(count)]
        self.made += calls
        return calls

    def wait_entered(self, count: int) -> None:
        for _ in range(count):
            assert self.entered.acquire(timeout=WAIT_S), "a call did not reach its handler"

    def wait_counts(self, expected: tuple[int, int]) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.caps.in_progress() != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.caps.in_progress() == expected


def refused(calls: list[Any], count: int) -> list[str]:
    """Wait until `count` of `calls` have ended; each must be RESOURCE_EXHAUSTED: their messages."""
    ended: list[Any] = []
    done = threading.Condition()

    def note(call: Any) -> None:
        with done:
            ended.append(call)
            done.notify_all()

    for call in calls:
        call.add_done_callback(note)
    with done:
        assert done.wait_for(lambda: len(ended) >= count, WAIT_S), f"{len(ended)} of {count} calls were refused"
    codes = [call.code() if hasattr(call, "code") else call.exception().code() for call in ended]
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * count, codes
    return [call.details() if hasattr(call, "details") else call.exception().details() for call in ended]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return make_federation(tmp_path_factory.mktemp("caps"), sites=2)


@pytest.fixture
def holding(project: Federation) -> Iterator[Holding]:
    caps = CallCaps(Caps(max_calls=6, max_streams=4, max_calls_per_peer=4, max_streams_per_peer=2))
    held = Holding(caps, project)

    def call(_request: bytes, _context: Any) -> bytes:
        held.entered.release()
        held.release.wait(WAIT_S * 2)
        return b"done"

    def stream(_request: bytes, context: Any) -> Iterator[bytes]:
        held.entered.release()
        yield b"open"
        while context.is_active() and not held.release.wait(0.05):
            pass

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), interceptors=[caps])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Hold", {
        "Call": grpc.unary_unary_rpc_method_handler(call),
        "Stream": grpc.unary_stream_rpc_method_handler(stream)}),))
    server.add_secure_port(f"127.0.0.1:{project.port}", server_credentials(load_kit(project.kit("localhost"))))
    server.start()
    try:
        yield held
    finally:
        held.release.set()
        for chan in held.channels:
            chan.close()
        server.stop(None).wait(10)


def test_calls_over_a_peers_cap_are_refused_and_another_peer_still_gets_in(holding: Holding):
    """site-1 holds its cap of 4 calls: a fifth is refused, naming the cap and its key; site-2 still gets in."""
    # Execute
    first = holding.calls("site-1", 5)
    # Assert
    assert refused(first, 1) == ["too many concurrent calls from site-1 (cap 4, local/resources.yml "
                                 "max_calls_per_peer); let some finish, or ask the server's operator to raise the cap"]
    holding.wait_entered(4)
    holding.calls("site-2", 1)
    holding.wait_entered(1)
    holding.release.set()
    assert sum(call.result(WAIT_S) == b"done" for call in first if call.exception() is None) == 4
    holding.wait_counts((0, 0))


def test_streams_over_a_peers_cap_are_refused_while_its_calls_still_answer(holding: Holding):
    """site-1 holds its cap of 2 streams: a third is refused; a call of site-1 still gets in."""
    # Execute
    streams = holding.calls("site-1", 3, streaming=True)
    # Assert
    [message] = refused(streams, 1)
    assert message.startswith("too many concurrent streams from site-1 (cap 2, local/resources.yml "
                              "max_streams_per_peer)")
    holding.wait_entered(2)
    holding.calls("site-1", 1)
    holding.wait_entered(1)
    assert holding.caps.in_progress() == (3, 2)


def test_the_overall_caps_refuse_whoever_comes_past_them(holding: Holding):
    """6 calls in all: site-1's 4 and site-2's 2 fill the cap and site-2's next is refused, naming max_calls;
    4 streams in all: the fifth is refused, naming max_streams."""
    # Execute
    holding.calls("site-1", 4)
    holding.wait_entered(4)
    second = holding.calls("site-2", 3)
    # Assert
    assert refused(second, 1) == ["the server is serving its cap of 6 concurrent calls (local/resources.yml "
                                  "max_calls); try again shortly"]
    holding.wait_entered(2)
    holding.release.set()
    holding.wait_counts((0, 0))
    holding.release.clear()
    holding.calls("site-1", 2, streaming=True)
    holding.calls("localhost", 2, streaming=True)
    holding.wait_entered(4)
    [message] = refused(holding.calls("site-2", 1, streaming=True), 1)
    assert message == ("the server is serving its cap of 4 concurrent streams (local/resources.yml max_streams); "
                       "try again shortly")


def test_a_cancelled_stream_gives_its_place_back(holding: Holding):
    """A client that cancels its streams frees their places: the peer can open as many again."""
    # Prepare
    streams = holding.calls("site-1", 2, streaming=True)
    holding.wait_entered(2)
    assert [next(stream) for stream in streams] == [b"open", b"open"]
    # Execute
    for stream in streams:
        stream.cancel()
    # Assert
    holding.wait_counts((0, 0))
    again = holding.calls("site-1", 2, streaming=True)
    holding.wait_entered(2)
    assert [next(stream) for stream in again] == [b"open", b"open"]
