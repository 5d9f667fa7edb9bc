"""Write a rendered kit to disk: its folder, file by file, and its zip.

Both are written with as few system calls as the kit allows (one `open`, one
`write`, one `fchmod` per file), since a provisioning run writes thousands of
them. The zip is a plain ZIP archive of stored (uncompressed) entries: kits
hold certificates, keys and short text, which compression would barely shrink.
It is assembled in memory, byte for byte as Python's `zipfile` writes it (a
test holds the two to that), in a fraction of the time.

A kit holds its participant's private key, so nobody but the owner may read it,
whatever the umask: kit folders (and the folders in them) are created 0700 and
zips 0600.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

from flctl.provisioner.kit_files import KitFile

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_VERSION = 20  # 2.0: stored entries, no ZIP64
_UNIX = 3
_UTF8 = 0x800
_LIMIT = 0xFFFF_FFFF  # beyond this ZIP64 is needed, which kits never need
FOLDER_MODE = 0o700  # a kit folder and every folder in it
ZIP_MODE = 0o600  # a kit's zip (and its encrypted form)


def write_files(root: Path, files: Mapping[str, KitFile]) -> None:
    """Create `root` (0700) and every file under it (none may exist yet), each with its mode, one write each."""
    root.parent.mkdir(parents=True, exist_ok=True)
    root.mkdir(mode=FOLDER_MODE, exist_ok=True)
    os.chmod(root, FOLDER_MODE)
    base = os.fspath(root)
    folders = {base}
    for rel, f in files.items():
        path = f"{base}/{rel}"
        folder = os.path.dirname(path)
        if folder not in folders:
            os.makedirs(folder, mode=FOLDER_MODE, exist_ok=True)
            folders.add(folder)
        create_file(path, f.data, f.mode)


def write_zip(path: Path, top: str, files: Mapping[str, KitFile], now: dt.datetime) -> bytes:
    """The kit as `top/...` in a new zip file, mode 0600 (entries sorted, modes kept, all dated `now`); returns
    the bytes written."""
    data = zip_bytes(top, files, now)
    write_private(path, data)
    return data


def write_private(path: Path, data: bytes) -> None:
    """A new file (never an existing one) holding `data`, readable by its owner only (0600)."""
    create_file(os.fspath(path), data, ZIP_MODE)


def zip_bytes(top: str, files: Mapping[str, KitFile], now: dt.datetime) -> bytes:
    """What `zipfile.ZipFile(..., "w", ZIP_STORED)` writes for these entries, with ZipInfo(date_time=now)."""
    dos_date = (now.year - 1980) << 9 | now.month << 5 | now.day
    dos_time = now.hour << 11 | now.minute << 5 | now.second // 2
    parts: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for rel, f in sorted(files.items()):
        name = f"{top}/{rel}"
        try:
            raw, flags = name.encode("ascii"), 0
        except UnicodeEncodeError:
            raw, flags = name.encode("utf-8"), _UTF8
        size, crc = len(f.data), zlib.crc32(f.data)
        if size >= _LIMIT or offset >= _LIMIT:
            raise ValueError(f"{name} is too large for a kit archive")
        header = _LOCAL.pack(b"PK\x03\x04", _VERSION, 0, flags, 0, dos_time, dos_date, crc, size, size,
                             len(raw), 0)
        central.append(_CENTRAL.pack(b"PK\x01\x02", _VERSION, _UNIX, _VERSION, 0, flags, 0, dos_time, dos_date,
                                     crc, size, size, len(raw), 0, 0, 0, 0, (0o100000 | f.mode) << 16, offset)
                       + raw)
        parts += (header, raw, f.data)
        offset += len(header) + len(raw) + size
    directory = b"".join(central)
    end = _END.pack(b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0)
    return b"".join((*parts, directory, end))


def create_file(path: str, data: bytes, mode: int) -> None:
    """A new file (O_EXCL, never through a link) holding `data`; `mode` set exactly whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
