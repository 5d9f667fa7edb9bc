"""The flow-control window: gRPC's options for a window size (read from a node's resources: tests/test_resources.py)."""

from __future__ import annotations

from flctl.node.security.tls import CHUNK, channel_options, flow_control, server_options


def test_a_fixed_window_turns_off_bandwidth_probing_and_sets_the_lookahead():
    """A window of N bytes: no bandwidth-delay probing (which grows the window), and N bytes of lookahead."""
    # Execute
    options = dict(flow_control(8 * CHUNK))
    # Assert
    assert options == {"grpc.http2.bdp_probe": 0, "grpc.http2.lookahead_bytes": 8 * CHUNK}


def test_window_zero_leaves_grpc_its_adaptive_window():
    """0 sets nothing, so gRPC keeps its own window, grown with its bandwidth-delay estimate."""
    assert flow_control(0) == []
    assert "grpc.http2.bdp_probe" not in dict(channel_options(0))
    assert "grpc.http2.lookahead_bytes" not in dict(server_options(0))


def test_channels_and_servers_take_the_window_they_are_given():
    """The window given reaches both a site's channel and the server's options, besides their other settings."""
    # Execute
    client, server = dict(channel_options(2 * CHUNK)), dict(server_options(16 * CHUNK))
    # Assert
    assert client["grpc.http2.lookahead_bytes"] == 2 * CHUNK and client["grpc.keepalive_time_ms"] == 20_000
    assert server["grpc.http2.lookahead_bytes"] == 16 * CHUNK and server["grpc.http2.max_ping_strikes"] == 2
