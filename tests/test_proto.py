"""The generated gRPC code matches node/wire/proto/flctl.proto."""

from __future__ import annotations

from flctl.node.wire.proto import generate


def test_generated_code_is_fresh():
    """Regenerating from flctl.proto gives byte-identical files (else: python -m flctl.node.wire.proto.generate)."""
    assert generate.stale() == []
