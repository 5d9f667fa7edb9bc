"""Model chunks written and read without protobuf's copies are exactly what protobuf writes and reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flctl.node.wire import chunk_codec
from flctl.node.wire.proto import flctl_pb2 as pb


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 1024 * 1024])
def test_a_chunk_is_encoded_as_protobuf_encodes_it(size: int):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)

    encoded = chunk_codec.encode(memoryview(data))

    assert encoded == pb.TaskMessage(chunk=data).SerializeToString() == pb.ResultMessage(chunk=data).SerializeToString()
    assert pb.ResultMessage.FromString(encoded).chunk == data


@given(st.binary(max_size=5000))
def test_a_chunk_protobuf_wrote_is_read_as_a_view_of_the_same_bytes(data: bytes):
    raw = pb.ResultMessage(chunk=data).SerializeToString()

    message = chunk_codec.decoder(pb.ResultMessage)(raw)

    assert isinstance(message, chunk_codec.RawChunk) and not message.HasField("header")
    assert bytes(message.chunk) == data and message.chunk.obj is raw  # a view: nothing copied


def test_anything_but_a_lone_chunk_is_left_to_protobuf():
    header = pb.TaskMessage(header=pb.TaskHeader(task_id="t", size=3)).SerializeToString()
    decode = chunk_codec.decoder(pb.TaskMessage)

    parsed = decode(header)

    assert isinstance(parsed, pb.TaskMessage) and parsed.header.task_id == "t"
    assert isinstance(decode(b""), pb.TaskMessage)  # an empty message
    chunk = pb.TaskMessage(chunk=b"abc").SerializeToString()
    assert chunk_codec.chunk_of(chunk + header) is None  # a chunk then more fields: protobuf decides
    assert chunk_codec.chunk_of(chunk[:-1]) is None  # cut short
    assert chunk_codec.chunk_of(b"\x12" + b"\xff" * 11) is None  # a length that never ends


def test_the_serializer_passes_encoded_chunks_and_serializes_messages():
    header = pb.ResultMessage(header=pb.ResultHeader(job_id="j"))

    assert chunk_codec.serialize(header) == header.SerializeToString()
    assert chunk_codec.serialize(chunk_codec.encode(b"xy")) == pb.ResultMessage(chunk=b"xy").SerializeToString()
