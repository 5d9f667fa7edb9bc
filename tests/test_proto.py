"""The generated gRPC code matches node/proto/flctl.proto."""

from __future__ import annotations

from node.proto import generate


def test_generated_code_is_fresh():
    """Regenerating from flctl.proto gives byte-identical files (else: python -m node.proto.generate)."""
    assert generate.stale() == []
