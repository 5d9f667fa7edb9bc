"""The Client API protocol: frames and messages, byte for byte."""

from __future__ import annotations

import json
import struct
import threading

import pytest

from flctl.node.client import api_wire as wire


def test_pack_lays_out_length_then_header() -> None:
    """A frame is a 4-byte big-endian header length, then the JSON header."""
    frame = wire.pack({"type": "ask"})

    assert frame == struct.pack(">I", 14) + b'{"type":"ask"}'


def test_unpack_reads_back_the_header() -> None:
    """unpack undoes pack."""
    header = wire.unpack(wire.pack({"type": "x", "n": [1, 2], "s": "é"}))

    assert header == {"type": "x", "n": [1, 2], "s": "é"}


@pytest.mark.parametrize("message", [
    wire.Hello(),
    wire.Ask(),
    wire.Assign(task_id=7, task_kind="train", round=3, meta={"lr": 0.1, "tags": ["a"]}),
    wire.End(),
    wire.Result(task_id=7, num_examples=120, metrics={"loss": 0.25, "acc": 1.0}, meta={"note": "ok"}),
    wire.Log(name="loss", value=0.5, step=4),
    wire.Log(name="loss", value=0.5),
])
def test_every_message_round_trips(message: wire.Message) -> None:
    """Each message decodes to an equal message; none announces a payload unless given one."""
    decoded, size = wire.decode(wire.encode(message))

    assert decoded == message
    assert size == 0


def test_params_announce_their_payload_size() -> None:
    """Assign and Result say how many payload bytes follow the frame."""
    message = wire.Assign(task_id=1, task_kind="train", round=0)

    assert wire.decode(wire.encode(message, 1234)) == (message, 1234)


def test_send_then_read_payload_moves_parts_as_they_are() -> None:
    """Over a real connection, a message's payload parts arrive after its frame, byte for byte."""
    from multiprocessing import Pipe

    left, right = Pipe()
    parts = [b"head", bytearray(b"-middle-"), memoryview(b"tail" * 50_000)]
    sender = threading.Thread(target=wire.send, args=(left, wire.Result(task_id=2, num_examples=3), parts))
    sender.start()
    message, size = wire.decode(right.recv_bytes())
    got = bytearray(size)
    wire.read_payload(right, memoryview(got))
    sender.join(5)

    assert message == wire.Result(task_id=2, num_examples=3)
    assert bytes(got) == b"head-middle-" + b"tail" * 50_000


@pytest.mark.parametrize(("header", "error"), [
    ({"type": "ask", "payload": 3}, "carries no payload"),
    ({"type": "assign", "task_id": 1, "name": "t", "round": 1, "payload": -1}, "byte count >= 0"),
    ({"type": "result", "task_id": 1, "num_examples": 1, "payload": "9"}, "byte count >= 0"),
])
def test_bad_payload_announcements_are_refused(header: dict[str, object], error: str) -> None:
    """A payload on a message that has none, or a size that is not a byte count, raises WireError."""
    with pytest.raises(wire.WireError, match=error):
        wire.decode(wire.pack(header))


def test_result_header_is_plain_json() -> None:
    """The header names its type and holds only JSON values (nothing another party sends is unpickled)."""
    frame = wire.encode(wire.Result(task_id=1, num_examples=3, metrics={"loss": 1.5}))
    (length,) = struct.unpack(">I", frame[:4])

    assert json.loads(frame[4:4 + length]) == {"type": "result", "task_id": 1, "num_examples": 3,
                                               "metrics": {"loss": 1.5}, "meta": {}}


def test_integer_metric_becomes_float() -> None:
    """A metric sent as an integer reads back as a float."""
    message, _ = wire.decode(wire.pack({"type": "result", "task_id": 1, "num_examples": 0, "metrics": {"n": 3}}))

    assert isinstance(message, wire.Result)
    assert message.metrics == {"n": 3.0}
    assert isinstance(message.metrics["n"], float)


@pytest.mark.parametrize(("frame", "error"), [
    (b"\x00\x00", "shorter than its length prefix"),
    (struct.pack(">I", 50) + b"{}", "runs past the end"),
    (struct.pack(">I", 2) + b"{}xyz", "leaves bytes over"),
    (struct.pack(">I", 3) + b"{x}", "not UTF-8 JSON"),
    (struct.pack(">I", 2) + b"\xff\xfe", "not UTF-8 JSON"),
    (struct.pack(">I", 2) + b"[]", "must be a JSON object"),
])
def test_malformed_frames_are_refused(frame: bytes, error: str) -> None:
    """A frame that is cut short or whose header is not a JSON object raises WireError."""
    with pytest.raises(wire.WireError, match=error):
        wire.unpack(frame)


@pytest.mark.parametrize(("header", "error"), [
    ({"type": "pickle"}, "unknown message type 'pickle'"),
    ({}, "unknown message type None"),
    ({"type": "assign", "task_id": "1", "task_kind": "train", "round": 1}, "'task_id' must be an integer"),
    ({"type": "assign", "task_id": True, "task_kind": "train", "round": 1}, "'task_id' must be an integer"),
    ({"type": "assign", "task_id": 1, "task_kind": 5, "round": 1}, "'task_kind' must be a string"),
    ({"type": "assign", "task_id": 1, "task_kind": "t", "round": 1, "meta": []}, "'meta' must be an object"),
    ({"type": "result", "task_id": 1, "num_examples": -1}, "'num_examples' must be >= 0"),
    ({"type": "result", "task_id": 1, "num_examples": 1, "metrics": {"loss": "low"}}, r"metrics\['loss'\]"),
    ({"type": "log", "name": "loss", "value": None}, "'value' must be a number"),
    ({"type": "log", "name": "loss", "value": 1.0, "step": 1.5}, "'step' must be an integer"),
    ({"type": "log", "name": "loss", "value": 10**400}, "too large"),
])
def test_invalid_messages_are_refused(header: dict[str, object], error: str) -> None:
    """Fields of the wrong type or range raise WireError naming the field."""
    with pytest.raises(wire.WireError, match=error):
        wire.decode(wire.pack(header))


def test_values_json_cannot_carry_are_refused_at_encode() -> None:
    """A meta value that is not JSON cannot be sent, and the error says so."""
    with pytest.raises(wire.WireError, match="only JSON values can travel"):
        wire.encode(wire.Result(task_id=1, num_examples=1, meta={"when": object()}))
