"""Unpack a kit's zip where it is received: only what a kit can hold, readable by its owner only.

The zip may have travelled by e-mail or USB, so it is read as untrusted: every entry
must be a plain file or folder under one top folder (the participant's name), with a
relative path free of `..`; links, devices, absolute paths, too many entries or too
many bytes are refused. Folders are made 0700 and files 0600 (0700 for scripts),
whatever the umask and the modes in the zip. The kit is written beside its final
place and renamed into it, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from flctl.provisioner import kit_encryption
from flctl.provisioner.errors import KitError
from flctl.provisioner.kit_writer import FOLDER_MODE, create_file

MAX_ENTRIES = 1000
MAX_BYTES = 64 * 1024 * 1024


def unpack_file(path: Path, out_dir: Path, passphrase: bytes | None = None, key_path: Path | None = None) -> Path:
    """Open a kit file (`NAME.zip.enc`, decrypted with the passphrase or key, or a plain `NAME.zip`) and
    unpack it into `out_dir/<participant>/`; return that folder."""
    shown = str(path)
    try:
        size = path.stat().st_size
        if size > kit_encryption.MAX_BYTES:
            raise KitError(f"{shown} is {size} bytes; a kit file is far smaller")
        data = path.read_bytes()
    except FileNotFoundError:
        raise KitError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise KitError(f"{shown} is a folder; give the kit's .zip.enc or .zip file") from None
    except OSError as exc:
        raise KitError(f"{shown} cannot be read ({exc.strerror})") from None
    if data.startswith(kit_encryption.MAGIC):
        key = kit_encryption.load_private(key_path) if key_path is not None else None
        data = kit_encryption.decrypt(data, shown, passphrase, key)
    return unpack_zip(data, out_dir, shown)


def unpack_zip(data: bytes, out_dir: Path, shown: str) -> Path:
    """Extract the kit zip `data` into `out_dir/<participant>/` and return that folder."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise KitError(f"{shown} is not a kit archive (not a zip file)") from None
    with archive:
        top, entries = _checked(archive, shown)
        target = out_dir / top
        if target.exists():
            raise KitError(f"{target} already exists; move it away or choose another -o")
        out_dir.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        tmp = out_dir / f".{top}.tmp-{os.getpid()}"
        try:
            tmp.mkdir(mode=FOLDER_MODE)
            for info, rel in entries:
                try:
                    _extract(archive, info, tmp, rel, shown)
                except (FileExistsError, NotADirectoryError, IsADirectoryError):
                    raise KitError(f"{shown} holds '{info.filename}' twice (as a file and a folder); "
                                   "refused") from None
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _checked(archive: zipfile.ZipFile, shown: str) -> tuple[str, list[tuple[zipfile.ZipInfo, PurePosixPath]]]:
    """The one top folder and each entry's path inside it; KitError for anything a kit cannot hold."""
    infos = archive.infolist()
    if not infos:
        raise KitError(f"{shown} is empty")
    if len(infos) > MAX_ENTRIES:
        raise KitError(f"{shown} has {len(infos)} entries; a kit has far fewer than {MAX_ENTRIES}")
    if sum(i.file_size for i in infos) > MAX_BYTES:
        raise KitError(f"{shown} unpacks to more than {MAX_BYTES // (1024 * 1024)} MiB; a kit is a few KB")
    tops: set[str] = set()
    entries = []
    seen: set[str] = set()
    for info in infos:
        if info.filename in seen:
            raise KitError(f"{shown} holds '{info.filename}' twice; refused")
        seen.add(info.filename)
        path = PurePosixPath(info.filename)
        parts = path.parts
        if (not parts or path.is_absolute() or "\\" in info.filename
                or any(p in ("", ".", "..") for p in parts)):
            raise KitError(f"{shown} holds '{info.filename}', a path outside its kit folder; refused")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise KitError(f"{shown} holds '{info.filename}', which is not a plain file (a link or device); "
                           "refused")
        if parts[0].startswith("."):
            raise KitError(f"{shown} holds '{info.filename}'; a kit's folder is named after its participant")
        tops.add(parts[0])
        if len(tops) > 1:
            raise KitError(f"{shown} holds more than one top folder ({', '.join(sorted(tops))}); a kit zip holds "
                           "one, named after its participant")
        if not info.is_dir() and len(parts) > 1:
            entries.append((info, PurePosixPath(*parts[1:])))
    return tops.pop(), entries


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path, rel: PurePosixPath, shown: str) -> None:
    path = root.joinpath(*rel.parts)
    path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    mode = 0o700 if (info.external_attr >> 16) & 0o100 else 0o600
    try:
        data = archive.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise KitError(f"{shown}: '{info.filename}' cannot be read ({exc})") from None
    create_file(os.fspath(path), data, mode)
