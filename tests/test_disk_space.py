"""A model file's disk space taken before its bytes are written (`flctl.node.wire.disk_space`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest

from flctl.node.wire import disk_space


def test_reserve_grows_the_file_to_hold_the_range_and_it_reads_as_zeros(tmp_path) -> None:
    """The file is as long as the range's end, reads zeros until written; a part's range may start anywhere."""
    # Prepare
    path = tmp_path / "model.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Execute
        disk_space.reserve(fd, 3000, 5000)
        disk_space.reserve(fd, 0)  # nothing to take
        os.pwrite(fd, b"ab", 5000)
    finally:
        os.close(fd)
    # Assert
    data = path.read_bytes()
    assert len(data) == 8000 and data[5000:5002] == b"ab" and data.count(0) == 7998


@pytest.mark.parametrize(("code", "raised"), [(errno.EOPNOTSUPP, False), (errno.ENOSPC, True), (errno.EIO, True)])
def test_a_file_system_that_cannot_is_passed_over_and_a_full_disk_is_raised(tmp_path, monkeypatch, code: int,
                                                                             raised: bool) -> None:
    """Where the file system has no fallocate the writes take the space as before; a full disk (or any other
    error) is the OSError a write would raise, so the server refuses the result as disk full before its bytes."""
    # Prepare
    def refuse(fd: int, offset: int, size: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    with open(tmp_path / "m", "wb") as out:
        # Execute / Assert
        if raised:
            with pytest.raises(OSError) as caught:
                disk_space.reserve(out.fileno(), 10)
            assert caught.value.errno == code
        else:
            disk_space.reserve(out.fileno(), 10)


def test_the_server_refuses_a_result_its_disk_cannot_hold_before_reading_a_byte(tmp_path, monkeypatch) -> None:
    """The daemon takes a result's space first: a full disk refuses it as `disk is full` (RESOURCE_EXHAUSTED, which
    fails the running jobs saying so), with none of its chunks read and no byte written; a part likewise."""
    # Prepare
    import grpc

    from flctl.node.server import federation_service as service

    def full(fd: int, size: int, offset: int = 0) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(disk_space, "reserve", full)
    read: list[int] = []

    def chunks() -> Iterator[Any]:
        read.append(1)
        yield from ()

    # Execute
    whole = service._receive(chunks(), 10 << 20, tmp_path / "r.part")
    part = service._receive_part(chunks(), tmp_path / "p.part", 1, 4 << 20, 8 << 20)
    # Assert
    for refused in (whole, part):
        assert refused == (grpc.StatusCode.RESOURCE_EXHAUSTED, service.DISK_FULL)
    assert not read, "no chunk was read"
    assert not (tmp_path / "r.part").exists() or (tmp_path / "r.part").stat().st_size == 0
