"""Job bundles: deterministic packing, and extraction that refuses hostile archives."""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from flctl.node.errors import JobError
from flctl.node.jobs.bundle import BundleLimits, bundle_digest, extract_bundle, pack_job


def make_job(root: Path) -> Path:
    job = root / "job"
    (job / "app" / "lib").mkdir(parents=True)
    (job / "job.yml").write_text("api_version: 1\n")
    (job / "app" / "train.py").write_text("print('hi')\n")
    (job / "app" / "lib" / "net.py").write_text("X = 1\n")
    (job / "app" / "run.sh").write_text("#!/bin/sh\n")
    (job / "app" / "run.sh").chmod(0o755)
    (job / "app" / "__pycache__").mkdir()
    (job / "app" / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"\0")
    (job / "app" / "old.pyc").write_bytes(b"\0")
    (job / ".git").mkdir()
    (job / ".git" / "HEAD").write_text("ref\n")
    return job


def zip_of(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()


def deflate_bomb(name: str, size: int) -> bytes:
    """A zip whose one entry inflates to `size` zero bytes, built in milliseconds: one compressed block of
    zeros repeated (full flushes make blocks independent). Its CRC is left 0: extraction must stop long before."""
    block = 16 * 1024 * 1024
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = piece * (size // block) + compressor.flush(zlib.Z_FINISH)
    raw = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, 0, len(data), size, len(raw), 0) + raw
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, 0, len(data), size, len(raw),
                          0, 0, 0, 0, 0, 0) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def refusal(data: bytes, target: Path, limits: BundleLimits | None = None) -> str:
    with pytest.raises(JobError) as info:
        extract_bundle(data, target, limits)
    return str(info.value)


def test_pack_is_deterministic_and_skips_caches(tmp_path):
    """Packing twice (with fresh mtimes) gives the same bytes; caches and .git are left out."""
    # Prepare
    job = make_job(tmp_path)
    first = pack_job(job)
    os.utime(job / "app" / "train.py", (1e9, 1e9))
    # Execute
    second = pack_job(job)
    # Assert
    assert first == second
    assert bundle_digest(first) == bundle_digest(second) and len(bundle_digest(first)) == 64
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.namelist() == ["app/lib/net.py", "app/run.sh", "app/train.py", "job.yml"]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_pack_then_extract_round_trips_with_the_executable_bit(tmp_path):
    """What was packed comes back, file for file, with run.sh still executable."""
    # Prepare
    data = pack_job(make_job(tmp_path))
    target = tmp_path / "out" / "job-1"
    # Execute
    extract_bundle(data, target)
    # Assert
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "app/lib/net.py", "app/run.sh", "app/train.py", "job.yml"]
    assert (target / "app" / "train.py").read_text() == "print('hi')\n"
    assert stat.S_IMODE((target / "app" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "job.yml").stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["job-1"]


def test_pack_follows_links_inside_the_folder(tmp_path):
    """A link to a file inside the job is packed as that file's content."""
    # Prepare
    job = make_job(tmp_path)
    (job / "app" / "alias.py").symlink_to("train.py")
    # Execute
    data = pack_job(job)
    # Assert
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.read("app/alias.py") == b"print('hi')\n"


def test_pack_refuses_links_outside_the_folder(tmp_path):
    """A link to a file outside the job folder is refused, naming the link."""
    # Prepare
    job = make_job(tmp_path)
    (tmp_path / "secret.txt").write_text("s")
    (job / "app" / "data.txt").symlink_to(tmp_path / "secret.txt")
    # Execute
    with pytest.raises(JobError) as info:
        pack_job(job)
    # Assert
    assert str(info.value).startswith(f"{job / 'app' / 'data.txt'}: is a link to {tmp_path / 'secret.txt'}, outside")


def test_pack_refuses_a_link_loop(tmp_path):
    """A link to a folder that contains it is refused rather than followed forever."""
    # Prepare
    job = make_job(tmp_path)
    (job / "app" / "loop").symlink_to(job / "app")
    # Execute
    with pytest.raises(JobError) as info:
        pack_job(job)
    # Assert
    assert "is a link to a folder that contains it" in str(info.value)


def test_pack_checks_limits(tmp_path):
    """A job with more files than allowed is refused before zipping."""
    # Prepare
    job = make_job(tmp_path)
    # Execute
    with pytest.raises(JobError) as info:
        pack_job(job, BundleLimits(max_files=3))
    # Assert
    assert str(info.value) == f"{job}: has 4 files; a job may have at most 3"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x", "entry '../x' has a '..' component and would land outside the job folder"),
        ("app/../../x", "entry 'app/../../x' has a '..' component"),
        ("/etc/x", "entry '/etc/x' is an absolute path"),
        ("C:/x", "entry 'C:/x' is an absolute path"),
        ("app\\..\\x", "has an unusable name (empty, NUL or backslash)"),
    ],
    ids=["parent", "nested-parent", "absolute", "drive", "backslash"],
)
def test_paths_that_escape_are_refused(tmp_path, name, message):
    """Traversal and absolute entries are refused and nothing is written anywhere."""
    # Prepare
    data = zip_of([("job.yml", b"a"), (name, b"pwned")])
    target = tmp_path / "t" / "job"
    target.parent.mkdir()
    # Execute
    text = refusal(data, target)
    # Assert
    assert text.startswith("job bundle: ")
    assert message in text
    assert list((tmp_path / "t").iterdir()) == []
    assert not (tmp_path / "x").exists()


def test_symlink_entries_are_refused(tmp_path):
    """An entry whose mode says symbolic link is refused, not created."""
    # Prepare
    link = zipfile.ZipInfo("app/passwd")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = zip_of([(link, b"/etc/passwd")])
    # Execute
    text = refusal(data, tmp_path / "job")
    # Assert
    assert text == "job bundle: entry 'app/passwd' is a symbolic link; bundles may hold only files and folders"
    assert not (tmp_path / "job").exists()


def test_too_many_files_are_refused(tmp_path):
    """20,000 tiny files exceed the default 10,000 and are refused before anything is written."""
    # Prepare
    data = zip_of([(f"f{i}", b"") for i in range(20_000)], zipfile.ZIP_STORED)
    # Execute
    text = refusal(data, tmp_path / "job")
    # Assert
    assert text == "job bundle: has 20000 entries; a job may have at most 10000"
    assert list(tmp_path.iterdir()) == []


def test_two_gigabyte_bomb_is_refused(tmp_path):
    """A 2 GiB entry of zeros (2 MB compressed) is refused from its sizes without inflating it."""
    # Prepare
    data = deflate_bomb("zeros.bin", 2 * 1024**3)
    # Execute
    text = refusal(data, tmp_path / "job")
    # Assert
    assert len(data) < 4 * 1024 * 1024
    assert text == "job bundle: would unpack to 2147483648 bytes; a job may hold at most 1073741824"
    assert list(tmp_path.iterdir()) == []


def test_bomb_that_lies_about_its_size_is_stopped_while_streaming(tmp_path):
    """A bomb whose header claims a small size is cut off while inflating, and the partial file is removed."""
    # Prepare
    data = deflate_bomb("zeros.bin", 256 * 1024 * 1024)
    claimed = struct.pack("<I", 1000)
    data = data[:22] + claimed + data[26:]  # local header's uncompressed size
    central = data.index(b"PK\x01\x02")
    data = data[:central + 24] + claimed + data[central + 28:]
    # Execute
    text = refusal(data, tmp_path / "job", BundleLimits(max_total_bytes=10_000))
    # Assert
    assert text.startswith("job bundle: entry 'zeros.bin' cannot be read")
    assert list(tmp_path.iterdir()) == []


def test_high_compression_ratio_past_the_allowed_total_is_refused(tmp_path):
    """An entry that inflates 1000 times to more than the job may hold is refused before anything is written."""
    # Prepare
    data = deflate_bomb("zeros.bin", 64 * 1024 * 1024)
    # Execute
    text = refusal(data, tmp_path / "job", BundleLimits(max_total_bytes=32 * 1024 * 1024))
    # Assert
    assert text == "job bundle: would unpack to 67108864 bytes; a job may hold at most 33554432"
    assert list(tmp_path.iterdir()) == []


def test_high_compression_ratio_with_a_forged_checksum_is_refused(tmp_path):
    """A deflate bomb under the total but with a forged CRC is refused while reading, leaving nothing behind."""
    # Prepare
    data = deflate_bomb("zeros.bin", 64 * 1024 * 1024)
    # Execute
    text = refusal(data, tmp_path / "job")
    # Assert
    assert text.startswith("job bundle: entry 'zeros.bin' cannot be read")
    assert list(tmp_path.iterdir()) == []


ZEROS = 64 * 1024 * 1024  # deflates about 1000 times: past the 200 times that once refused it as a bomb


def zero_job(tmp_path: Path, size: int = ZEROS) -> Path:
    """A job folder with a script and a sparse, zero-filled data file of `size` bytes."""
    job = tmp_path / "src"
    (job / "data").mkdir(parents=True)
    (job / "train.py").write_text("print('hi')\n")
    with (job / "data" / "zeros.bin").open("wb") as handle:
        handle.truncate(size)  # sparse: no disk blocks, reads as zeros
    return job


def test_honest_compressible_file_under_the_limits_is_accepted(tmp_path):
    """A large zero-filled file (1000:1) packs with progress and unpacks whole, being under the allowed total."""
    # Prepare
    job = zero_job(tmp_path)
    seen: list[tuple[int, int | None]] = []
    # Execute
    data = pack_job(job, progress=lambda done, total: seen.append((done, total)))
    extract_bundle(data, tmp_path / "job")
    # Assert
    assert len(data) * 200 < ZEROS  # the ratio alone would have called it a bomb
    unpacked = tmp_path / "job" / "data" / "zeros.bin"
    assert unpacked.stat().st_size == ZEROS
    with unpacked.open("rb") as handle:
        assert not any(handle.read(1024 * 1024).strip(b"\0") for _ in range(ZEROS // (1024 * 1024)))
    assert seen[-1] == (ZEROS + len("print('hi')\n"), ZEROS + len("print('hi')\n"))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_honest_compressible_file_over_the_limit_is_refused(tmp_path):
    """The same zero file over max_total_bytes is refused when packing and, packed anyway, when unpacking."""
    # Prepare
    job = zero_job(tmp_path)
    data = pack_job(job)
    small = BundleLimits(max_total_bytes=ZEROS // 2)
    # Execute
    with pytest.raises(JobError) as packing:
        pack_job(job, small)
    text = refusal(data, tmp_path / "job", small)
    # Assert
    assert str(packing.value).endswith(f"bytes; a job may hold at most {ZEROS // 2}")
    assert text == f"job bundle: would unpack to {ZEROS + 12} bytes; a job may hold at most {ZEROS // 2}"
    assert not (tmp_path / "job").exists()


def test_total_size_is_enforced(tmp_path):
    """Entries adding up to more than max_total_bytes are refused before extraction."""
    # Prepare
    data = zip_of([("a", os.urandom(3000)), ("b", os.urandom(3000))])
    # Execute
    text = refusal(data, tmp_path / "job", BundleLimits(max_total_bytes=5000))
    # Assert
    assert text == "job bundle: would unpack to 6000 bytes; a job may hold at most 5000"


def test_oversized_bundle_is_refused(tmp_path):
    """Bytes over max_bundle_bytes are refused before being opened."""
    # Prepare
    data = zip_of([("a", os.urandom(2000))])
    # Execute
    text = refusal(data, tmp_path / "job", BundleLimits(max_bundle_bytes=1000))
    # Assert
    assert text.startswith("job bundle: is ") and text.endswith("bytes; a bundle may be at most 1000")


def test_not_a_zip_is_refused(tmp_path):
    """Garbage is refused as not a zip archive."""
    # Prepare / Execute
    text = refusal(b"hello", tmp_path / "job")
    # Assert
    assert text.startswith("job bundle: is not a zip archive")


def test_duplicate_entries_are_refused(tmp_path):
    """Two entries with one name are ambiguous and refused."""
    # Prepare
    with pytest.warns(UserWarning):
        data = zip_of([("job.yml", b"a"), ("job.yml", b"b")])
    # Execute
    text = refusal(data, tmp_path / "job")
    # Assert
    assert text == "job bundle: entry 'job.yml' appears twice"


def test_existing_target_is_not_overwritten(tmp_path):
    """Extracting onto an existing folder is a caller's mistake: FileExistsError, folder untouched."""
    # Prepare
    target = tmp_path / "job"
    target.mkdir()
    # Execute
    with pytest.raises(FileExistsError):
        extract_bundle(zip_of([("job.yml", b"a")]), target)
    # Assert
    assert list(target.iterdir()) == []
