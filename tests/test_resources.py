"""A node's own local/resources.yml: each setting read with its default, and a clear error for a value that is not
allowed (the file, the key and what is allowed), so a node never starts on a setting it silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.node.config.resources import MAX_WINDOW_MB, MIB, Resources, load_resources
from flctl.provisioner.errors import KitError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "resources.yml"
    path.write_text(text)
    return path


def test_no_file_an_empty_one_or_other_keys_give_the_defaults(tmp_path: Path):
    """Missing, empty, or naming only keys this reader does not use (`cpus`, `gpus`): every default."""
    # Execute
    found = [load_resources(tmp_path / "missing.yml"), load_resources(write(tmp_path, "")),
             load_resources(write(tmp_path, "api_version: 1\ncpus: auto\ngpus: []\n"))]
    # Assert
    assert found == [Resources()] * 3
    assert (Resources().max_concurrent_jobs, Resources().disk_reserve_bytes, Resources().spare_job_process,
            Resources().stream_window_bytes) == (2, 16 * MIB, True, 4 * MIB)


def test_every_setting_is_read(tmp_path: Path):
    """Each key, set: the values the daemons use (sizes in bytes)."""
    # Prepare
    path = write(tmp_path, "max_concurrent_jobs: 5\ndisk_reserve_mb: 0.5\nspare_job_process: false\n"
                           "stream_window_mb: 0.25\n")
    # Execute
    resources = load_resources(path)
    # Assert
    assert (resources.max_concurrent_jobs, resources.disk_reserve_bytes, resources.spare_job_process,
            resources.stream_window_bytes) == (5, MIB // 2, False, MIB // 4)


@pytest.mark.parametrize(("text", "expected"), [
    ("stream_window_mb: 16\n", 16 * MIB),
    ("stream_window_mb: 0\n", 0),  # gRPC's adaptive window
    (f"stream_window_mb: {MAX_WINDOW_MB}\n", MAX_WINDOW_MB * MIB),
    ("stream_window_mb: 0.0625\n", 64 * 1024),  # the smallest: HTTP/2's own initial window
])
def test_stream_window_is_a_size_in_mib(tmp_path: Path, text: str, expected: int):
    assert load_resources(write(tmp_path, text)).stream_window_bytes == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("stream_window_mb: lots\n", "stream_window_mb must be a size in MiB from 0.0625 to 1024, or 0"),
    ("stream_window_mb: -1\n", "stream_window_mb must be a size in MiB"),
    ("stream_window_mb: 2048\n", "stream_window_mb must be a size in MiB"),
    ("stream_window_mb: 0.01\n", "stream_window_mb must be a size in MiB"),
    ("stream_window_mb: .nan\n", "stream_window_mb must be a size in MiB"),
    ("stream_window_mb: true\n", "stream_window_mb must be a size in MiB"),
    ("stream_window_mb: '4'\n", "stream_window_mb must be a size in MiB"),
    ("max_concurrent_jobs: 0\n", "max_concurrent_jobs must be a whole number of jobs, 1 or more"),
    ("max_concurrent_jobs: 2.5\n", "max_concurrent_jobs must be a whole number of jobs, 1 or more"),
    ("max_concurrent_jobs: many\n", "max_concurrent_jobs must be a whole number of jobs, 1 or more"),
    ("disk_reserve_mb: -5\n", "disk_reserve_mb must be a size in MB, 0 or more"),
    ("disk_reserve_mb: [16]\n", "disk_reserve_mb must be a size in MB, 0 or more"),
    ("spare_job_process: maybe\n", "spare_job_process must be true or false"),
    ("spare_job_process: 0\n", "spare_job_process must be true or false"),
    ("max_calls: 0\n", "max_calls must be a whole number of calls from 1 to 20000 (default 4000), not 0"),
    ("max_streams: 100000\n", "max_streams must be a whole number of streams from 1 to 20000"),
    ("max_calls_per_peer: 2.5\n", "max_calls_per_peer must be a whole number of calls from 1 to 20000"),
    ("max_streams_per_peer: lots\n", "max_streams_per_peer must be a whole number of streams"),
    ("handshake_timeout_s: 0\n", "handshake_timeout_s must be a time in seconds from 0.1 to 3600"),
    ("max_log_line_chars: 10\n", "max_log_line_chars must be a whole number of characters from 80"),
    ("max_log_lines_per_minute: -1\n", "max_log_lines_per_minute must be a whole number of lines"),
    ("max_metrics_per_minute: true\n", "max_metrics_per_minute must be a whole number of metric values"),
    ("- a list\n", "must be a mapping of settings"),
])
def test_a_value_that_is_not_allowed_is_refused_naming_the_file_the_key_and_what_is_allowed(
        tmp_path: Path, text: str, expected: str):
    """KitError (exit code 2 at `flctl node start`), never a default silently put in its place."""
    # Prepare
    path = write(tmp_path, f"api_version: 1\n{text}" if not text.startswith("-") else text)
    # Execute
    with pytest.raises(KitError) as info:
        load_resources(path)
    # Assert
    assert str(path) in str(info.value) and expected in str(info.value)


def test_yaml_that_does_not_parse_is_refused_naming_the_file(tmp_path: Path):
    with pytest.raises(KitError, match=r"cannot read .*resources\.yml"):
        load_resources(write(tmp_path, "spare_job_process: [\n"))


def test_a_key_that_is_not_a_setting_is_refused_naming_it_and_the_nearest(tmp_path: Path):
    """A misspelt setting stops the node (it would otherwise run on the default): the key, the nearest setting."""
    # Prepare
    path = write(tmp_path, "api_version: 1\nmax_concurent_jobs: 5\n")
    # Execute
    with pytest.raises(KitError) as caught:
        load_resources(path)
    # Assert
    message = str(caught.value)
    assert str(path) in message and "'max_concurent_jobs' is not a setting" in message
    assert "did you mean max_concurrent_jobs?" in message


def test_a_new_kit_s_resources_load_with_their_commented_settings_uncommented(tmp_path: Path):
    """The resources.yml every kit gets holds only settings, also once a commented `# key: value` is uncommented."""
    # Prepare
    from flctl.provisioner.kit_files import _RESOURCES

    text = _RESOURCES.format(kind="site")
    uncommented = "\n".join(line[2:] if line.startswith("# ") and ": " in line and line[2:3].isalpha() and
                             line[2:].split(":")[0].isidentifier() else line for line in text.splitlines())
    # Execute
    resources = load_resources(write(tmp_path, uncommented))
    # Assert
    assert resources.max_concurrent_jobs == 2
def test_the_caps_on_calls_streams_handshakes_and_reports_are_read(tmp_path: Path):
    """The server's caps per peer and overall, its handshake deadline and its limits on a site's logs and metrics;
    by default the overall caps hold a thousand sites (each with a command stream, a task poll and an upload)."""
    # Prepare
    path = write(tmp_path, "max_calls: 50\nmax_streams: 40\nmax_calls_per_peer: 8\nmax_streams_per_peer: 4\n"
                           "handshake_timeout_s: 1.5\nmax_log_line_chars: 200\nmax_log_lines_per_minute: 30\n"
                           "max_metrics_per_minute: 10\n")
    # Execute
    resources = load_resources(path)
    # Assert
    assert (resources.max_calls, resources.max_streams, resources.max_calls_per_peer, resources.max_streams_per_peer,
            resources.handshake_timeout_s, resources.max_log_line_chars, resources.max_log_lines_per_minute,
            resources.max_metrics_per_minute) == (50, 40, 8, 4, 1.5, 200, 30, 10)
    assert Resources().max_streams > 3 * 1000 and Resources().max_calls > Resources().max_streams
