"""The flow-control window: gRPC's options for a window size, and `stream_window_mb` read from a node's own
`local/resources.yml` (a clear error for a value that is not a size)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.local_files import MAX_WINDOW_MB, stream_window_bytes
from node.tls import CHUNK, WINDOW_MB, flow_control
from provisioner.errors import KitError


def test_a_fixed_window_turns_off_bandwidth_probing_and_sets_the_lookahead():
    """A window of N bytes: no bandwidth-delay probing (which grows the window), and N bytes of lookahead."""
    # Execute
    options = dict(flow_control(8 * CHUNK))
    # Assert
    assert options == {"grpc.http2.bdp_probe": 0, "grpc.http2.lookahead_bytes": 8 * CHUNK}


def test_window_zero_leaves_grpc_its_adaptive_window():
    """0 sets nothing, so gRPC keeps its own window, grown with its bandwidth-delay estimate."""
    assert flow_control(0) == []


@pytest.mark.parametrize(("text", "expected"), [
    (None, WINDOW_MB * CHUNK),                        # no resources.yml at all
    ("", WINDOW_MB * CHUNK),                          # an empty one
    ("api_version: 1\ncpus: auto\n", WINDOW_MB * CHUNK),  # one without the key
    ("stream_window_mb: 16\n", 16 * CHUNK),
    ("stream_window_mb: 0.25\n", CHUNK // 4),
    ("stream_window_mb: 0\n", 0),
    (f"stream_window_mb: {MAX_WINDOW_MB}\n", MAX_WINDOW_MB * CHUNK),
])
def test_stream_window_is_read_in_mib_with_a_default(tmp_path: Path, text: str | None, expected: int):
    """`stream_window_mb` is a size in MiB; without it, the default window."""
    # Prepare
    path = tmp_path / "resources.yml"
    if text is not None:
        path.write_text(text)
    # Execute / Assert
    assert stream_window_bytes(path) == expected


@pytest.mark.parametrize("value", ["lots", "-1", "2048", "true", ".nan", "[4]", "'4'"])
def test_a_bad_stream_window_is_refused_naming_the_file_and_what_is_allowed(tmp_path: Path, value: str):
    """Not a number of MiB from 0 to the maximum: KitError (exit code 2) naming the file, the key and the range."""
    # Prepare
    path = tmp_path / "resources.yml"
    path.write_text(f"api_version: 1\nstream_window_mb: {value}\n")
    # Execute
    with pytest.raises(KitError) as info:
        stream_window_bytes(path)
    # Assert
    message = str(info.value)
    assert str(path) in message and "stream_window_mb must be a number of MiB from 0 to 1024" in message


def test_an_unreadable_resources_file_is_refused_naming_it(tmp_path: Path):
    """YAML that does not parse: KitError naming the file."""
    # Prepare
    path = tmp_path / "resources.yml"
    path.write_text("stream_window_mb: [\n")
    # Execute / Assert
    with pytest.raises(KitError, match=r"cannot read .*resources\.yml"):
        stream_window_bytes(path)
