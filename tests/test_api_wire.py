"""The Client API protocol: frames and messages, byte for byte."""

from __future__ import annotations

import json
import struct

import pytest

from node import api_wire as wire


def test_pack_lays_out_length_header_payload() -> None:
    """A frame is a 4-byte big-endian header length, the JSON header, then the payload."""
    frame = wire.pack({"type": "ask"}, b"\x00\x01")

    assert frame == struct.pack(">I", 14) + b'{"type":"ask"}' + b"\x00\x01"


def test_unpack_reads_back_header_and_payload() -> None:
    """unpack undoes pack, payload included."""
    header, payload = wire.unpack(wire.pack({"type": "x", "n": [1, 2], "s": "é"}, b"abc"))

    assert header == {"type": "x", "n": [1, 2], "s": "é"}
    assert payload == b"abc"


@pytest.mark.parametrize("message", [
    wire.Hello(),
    wire.Ask(),
    wire.Assign(task_id=7, name="train", round=3, meta={"lr": 0.1, "tags": ["a"]}),
    wire.End(),
    wire.Result(task_id=7, num_examples=120, metrics={"loss": 0.25, "acc": 1.0}, meta={"note": "ok"}),
    wire.Log(name="loss", value=0.5, step=4),
    wire.Log(name="loss", value=0.5),
])
def test_every_message_round_trips(message: wire.Message) -> None:
    """Each message decodes to an equal message, with its payload intact."""
    decoded, payload = wire.decode(wire.encode(message, b"PARAMS"))

    assert decoded == message
    assert payload == b"PARAMS"


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
    ({"type": "assign", "task_id": "1", "name": "train", "round": 1}, "'task_id' must be an integer"),
    ({"type": "assign", "task_id": True, "name": "train", "round": 1}, "'task_id' must be an integer"),
    ({"type": "assign", "task_id": 1, "name": 5, "round": 1}, "'name' must be a string"),
    ({"type": "assign", "task_id": 1, "name": "t", "round": 1, "meta": []}, "'meta' must be an object"),
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
