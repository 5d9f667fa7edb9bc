"""A fake `nvidia-smi` for tests on machines without a GPU: a script that prints what the real one prints for the
query flctl makes (`--query-gpu=index,name,memory.total,memory.used,memory.free --format=csv,noheader,nounits`)."""

from __future__ import annotations

import os
from pathlib import Path

A100 = "NVIDIA A100-SXM4-40GB"
TWO_A100 = [(0, A100, 40960, 0, 40326), (1, A100, 40960, 1024, 39302)]


def fake_nvidia_smi(folder: Path, gpus: list[tuple[int, str, int, int, int]] = TWO_A100) -> Path:
    """Write `folder/nvidia-smi` listing `gpus` (index, name, total, used, free MiB); the folder to put on PATH.
    Asked anything but flctl's query, it fails as the real one does on a bad option."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i}, {name}, {total}, {used}, {free}\\n" for i, name, total, used, free in gpus)
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      'case "$*" in\n'
                      '  *--query-gpu=index,name,memory.total,memory.used,memory.free*)'
                      f' printf "{rows}" ;;\n'
                      '  *) echo "Invalid combination of input arguments." >&2; exit 2 ;;\n'
                      "esac\n")
    script.chmod(0o755)
    return folder


def path_with(folder: Path) -> str:
    """PATH with `folder` first."""
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
