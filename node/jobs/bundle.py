"""A job folder as zip bytes (deterministic), and safe extraction of such bytes from anyone.

`pack_job` packs a job folder, or a job file (`NAME.yml`, packed as `job.yml`) with the `app/` beside it, and
makes the same bytes from the same files: entries sorted, timestamps fixed, only
the executable bit kept. `extract_bundle` trusts nothing in the archive: it refuses paths that
leave the target, links and special files, too many entries, too many bytes (counted while
writing, not read from headers) and entries that inflate suspiciously; it writes into a
temporary folder beside the target and renames it, so a refused bundle leaves nothing behind.

An entry may inflate as far as the size it declares (the declared sizes together are checked
against `max_total_bytes` first): a large but honest, compressible file (a zero-filled data file
deflates 1000 times) is accepted. Inflating past both its declared size and `max_ratio` times its
compressed size is a bomb. zipfile itself also stops an entry at its declared size and checks its CRC.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flctl.node.errors import JobError
from flctl.provisioner.errors import Problem

JOB_FILE = "job.yml"
APP_FOLDER = "app"
SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
SKIPPED_SUFFIXES = (".pyc",)
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BundleLimits:
    """How large a job bundle may be; the defaults suit code plus modest data."""

    max_bundle_bytes: int = 512 * 1024 * 1024
    max_files: int = 10_000
    max_total_bytes: int = 1024 * 1024 * 1024
    max_ratio: int = 200
    ratio_floor_bytes: int = 1024 * 1024  # entries that inflate to less than this are never called bombs


def bundle_digest(data: bytes) -> str:
    """sha256 hex digest of a bundle."""
    return hashlib.sha256(data).hexdigest()


def job_file_of(path: Path) -> Path | None:
    """The job file `path` names (a file other than job.yml, whose app/ is beside it), else None: a job folder."""
    return path if path.is_file() and path.name != JOB_FILE else None


def job_entries(path: Path) -> list[tuple[str, Path]]:
    """(name in the zip, real path) of every file a job packs, sorted: everything in a job folder (but
    __pycache__, .git and *.pyc); for a job file, the file as job.yml and everything in the app/ beside it."""
    job_file = job_file_of(path)
    if job_file is None:
        folder = path.parent if path.is_file() else path  # a folder's job.yml stands for the folder
        if not folder.is_dir():
            raise JobError([Problem(str(path), None, "", "is not a folder")])
        return sorted(_files(folder.resolve(), folder.resolve(), PurePosixPath()), key=lambda item: item[0])
    app = job_file.parent / APP_FOLDER
    if not app.is_dir():
        raise JobError([Problem(str(job_file), None, "", f"has no {APP_FOLDER}/ folder beside it")])
    files = [(JOB_FILE, job_file.resolve()), *_files(app.resolve(), app.resolve(), PurePosixPath(APP_FOLDER))]
    return sorted(files, key=lambda item: item[0])


def pack_job(path: Path, limits: BundleLimits | None = None,
             progress: Callable[[int, int | None], None] | None = None) -> bytes:
    """Zip bytes of the job at `path` (`job_entries`: a job folder, or a job file and its app/), checked against
    `limits`.

    `progress(bytes read, total bytes)` is called as the files are read, for a progress display.
    """
    limits = limits or BundleLimits()
    where = str(path)
    files = job_entries(path)
    if len(files) > limits.max_files:
        raise _refuse(where, f"has {len(files)} files; a job may have at most {limits.max_files}")
    total = sum(real.stat().st_size for _, real in files)
    if total > limits.max_total_bytes:
        raise _refuse(where, f"holds {total} bytes; a job may hold at most {limits.max_total_bytes}")
    out = io.BytesIO()
    done = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, real in files:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.create_system = 3  # unix, so the mode bits below are read back
            executable = real.stat().st_mode & 0o111
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            large = real.stat().st_size >= zipfile.ZIP64_LIMIT
            with real.open("rb") as source, archive.open(info, "w", force_zip64=large) as sink:
                while chunk := source.read(_CHUNK):
                    sink.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    data = out.getvalue()
    if len(data) > limits.max_bundle_bytes:
        raise _refuse(where, f"packs into {len(data)} bytes; a bundle may be at most {limits.max_bundle_bytes}")
    return data


def _files(root: Path, folder: Path, prefix: PurePosixPath, seen: frozenset[Path] = frozenset()) -> Iterator[
        tuple[str, Path]]:
    """(name in the zip, real path) of every file under `folder`; links must stay inside `root`."""
    seen = seen | {folder}
    for entry in sorted(folder.iterdir()):
        name = prefix / entry.name
        if entry.name in SKIPPED_DIRS or entry.name.endswith(SKIPPED_SUFFIXES):
            continue
        real = entry.resolve() if entry.is_symlink() else entry
        if entry.is_symlink():
            if not real.is_relative_to(root):
                raise _refuse(str(entry), f"is a link to {real}, outside the job folder; copy the file in instead")
            if not real.exists():
                raise _refuse(str(entry), "is a link to nothing")
        if real.is_dir():
            if real in seen:
                raise _refuse(str(entry), "is a link to a folder that contains it")
            yield from _files(root, real, name, seen)
        elif real.is_file():
            yield str(name), real
        else:
            raise _refuse(str(entry), "is neither a file nor a folder")


def inner_path(path: str) -> PurePosixPath:
    """`path` as a path inside a job folder; ValueError when it is absolute, empty or climbs out with `..`."""
    inner = PurePosixPath(path)
    if not path or inner.is_absolute() or ".." in inner.parts:
        raise ValueError(f"{path!r} is not a path inside the job folder")
    return inner


def read_member(bundle: Path, path: str) -> bytes:
    """The file `path` of the job packed in `bundle`; OSError when it holds none."""
    import zipfile

    name = str(inner_path(path))
    with zipfile.ZipFile(bundle) as archive:
        try:
            return archive.read(name)
        except KeyError:
            raise FileNotFoundError(f"the job has no file {name}") from None


def extract_bundle(data: bytes, target: Path, limits: BundleLimits | None = None, source: str = "job bundle") -> None:
    """Unpack `data` into the new folder `target` (which must not exist); raise JobError naming the bad entry.

    `source` names the bundle in messages (e.g. the job id).
    """
    limits = limits or BundleLimits()
    if len(data) > limits.max_bundle_bytes:
        raise _refuse(source, f"is {len(data)} bytes; a bundle may be at most {limits.max_bundle_bytes}")
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise _refuse(source, f"is not a zip archive ({exc})") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_files:
            raise _refuse(source, f"has {len(entries)} entries; a job may have at most {limits.max_files}")
        names = [_checked_name(info, source) for info in entries]
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            _extract(archive, entries, names, temporary, limits, source, len(data))
            os.chmod(temporary, 0o755)
            temporary.rename(target)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise


def _checked_name(info: zipfile.ZipInfo, source: str) -> PurePosixPath:
    """The entry's relative path, or JobError when it is absolute, climbs out, or is not a plain file or folder."""
    raw = info.filename
    shown = repr(raw)
    if not raw or "\x00" in raw or "\\" in raw:
        raise _refuse(source, f"entry {shown} has an unusable name (empty, NUL or backslash)")
    path = PurePosixPath(raw)
    if path.is_absolute() or (len(raw) > 1 and raw[1] == ":"):
        raise _refuse(source, f"entry {shown} is an absolute path; entries must be relative to the job folder")
    if ".." in path.parts:
        raise _refuse(source, f"entry {shown} has a '..' component and would land outside the job folder")
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)  # 0 when the archiver stored no file type
    if stat.S_ISLNK(mode):
        raise _refuse(source, f"entry {shown} is a symbolic link; bundles may hold only files and folders")
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise _refuse(source, f"entry {shown} is a special file; bundles may hold only files and folders")
    if info.flag_bits & 0x1:
        raise _refuse(source, f"entry {shown} is encrypted")
    if not path.parts or path.parts == (".",):
        raise _refuse(source, f"entry {shown} names the job folder itself")
    return path


def _extract(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], names: list[PurePosixPath], into: Path,
             limits: BundleLimits, source: str, size: int) -> None:
    declared = sum(info.file_size for info in entries)
    if declared > limits.max_total_bytes:
        raise _refuse(source, f"would unpack to {declared} bytes; a job may hold at most {limits.max_total_bytes}")
    written = 0
    done: set[PurePosixPath] = set()
    for info, name in zip(entries, names, strict=True):
        if name in done:
            raise _refuse(source, f"entry '{info.filename}' appears twice")
        done.add(name)
        path = into.joinpath(*name.parts)
        try:
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            executable = (info.external_attr >> 16) & 0o111
            # As far as it declares (the declared total is within the limit), or max_ratio times its compressed size.
            ratio_budget = limits.max_ratio * max(1, min(info.compress_size, size)) + limits.ratio_floor_bytes
            budget = max(ratio_budget, info.file_size)
            entry_bytes = 0
            with archive.open(info) as stream, path.open("xb") as sink:
                while chunk := stream.read(_CHUNK):
                    entry_bytes += len(chunk)
                    written += len(chunk)
                    if written > limits.max_total_bytes:
                        raise _refuse(source, f"entry '{info.filename}' takes the job past {limits.max_total_bytes} "
                                              "bytes unpacked")
                    if entry_bytes > budget:
                        raise _refuse(source, f"entry '{info.filename}' inflates more than {limits.max_ratio} times "
                                              f"and past the {info.file_size} bytes it declares; refusing a likely "
                                              "zip bomb")
                    sink.write(chunk)
            path.chmod(0o755 if executable else 0o644)
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error) as exc:
            raise _refuse(source, f"entry '{info.filename}' cannot be read ({exc})") from None
        except OSError as exc:
            raise _refuse(source, f"entry '{info.filename}' cannot be written ({exc.strerror})") from None


def _refuse(where: str, message: str) -> JobError:
    return JobError([Problem(where, None, "", message)])
