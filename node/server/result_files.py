"""A job's result files on the server, written again instead of made new: the daemon writes each site's answer
into `results/`, the job process maps it for the workflow's running sum, and once the workflow no longer holds any
array over the mapping, the file becomes a spare (`.spare-*`) that the next answer of the same size is written into,
over the same pages.

Why: on the 2-core machine flctl is measured on, a new file's pages made writing the answers the server's largest
cost of taking them (the bare gRPC stream of `bench/transfer.py`, made to write what its server receives into a new
file, moved 209-249 MB/s per site instead of 353-390; into a file written before, 278-324), and with spares a 1 GB
answer reached the server at 309-382 MB/s against 191-282 made new (`python bench/transfer.py --mb 1000`, four runs
each, alternating, load 2.4-3.7, spares switched off by a temporary switch for the A/B; round 9.9-12.6 s against
10.6-13.5 s). The bare-stream figures are from a variant of the bench made for that measurement and not kept.

The cost: a spare's pages were written, so the kernel writes them to disk in the background in time (a deleted
result's never were), and a spare keeps its disk space until the job ends.

A spare is made only when the job process's mapping of the file is gone (a `weakref.finalize` on the mapping, which
every array the workflow holds keeps alive), so the daemon never writes into bytes the workflow still reads; at
most MAX_SPARES are kept per job (the others deleted, as before), so a job with many sites keeps no more disk than
that; the job's `results/` folder goes when the job ends, spares with it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import uuid
import weakref
from pathlib import Path
from typing import Any

SPARE_PREFIX = ".spare-"
MAX_SPARES = 2
"""Spares kept per job: enough for two answers a round; each holds a model's size of disk until the job ends."""


def recycle(path: Path, params: dict[str, Any]) -> None:
    """`path`, mapped by `params` (`tensors.map_file`), becomes a spare once nothing holds the mapping; a file not
    mapped (no bytes to map) is deleted now."""
    mapped = _mapping_of(params)
    if mapped is None:
        path.unlink(missing_ok=True)
        return
    weakref.finalize(mapped, _to_spare, path).atexit = False


def take_spare(folder: Path, size: int, into: Path) -> bool:
    """Rename a spare of exactly `size` bytes in `folder` to `into` (to be written over); False when there is none.
    Safe between threads and processes: a spare another caller renamed first is skipped."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(SPARE_PREFIX)]
    except OSError:
        return False
    for name in names:
        spare = folder / name
        try:
            if spare.stat().st_size != size:
                continue
            os.rename(spare, into)
        except OSError:
            continue
        return True
    return False


def _to_spare(path: Path) -> None:
    with contextlib.suppress(OSError):
        kept = sum(1 for entry in os.scandir(path.parent) if entry.name.startswith(SPARE_PREFIX))
        if kept < MAX_SPARES:
            os.rename(path, path.with_name(SPARE_PREFIX + uuid.uuid4().hex[:12]))
            return
    path.unlink(missing_ok=True)


def _mapping_of(params: dict[str, Any]) -> mmap.mmap | None:
    from flctl.node.wire import tensors  # not at import: the daemon, which takes spares, imports no numpy until then

    for array in params.values():
        mapped = tensors.mapping_of(array)
        if mapped is not None:
            return mapped
    return None
