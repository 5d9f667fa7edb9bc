"""The GPUs of this machine: their indices, names and memory, from NVML (`nvidia-ml-py`, when installed and a driver
answers), else from `nvidia-smi`, else from torch (when it is installed with CUDA). `list_gpus()` is what a site's
`gpus: auto` and the GPU bench call; `gpu_usage()` refreshes used and free memory for each heartbeat.

Indices are the driver's (nvidia-smi's, PCI bus order); a job's CUDA_VISIBLE_DEVICES names them with
CUDA_DEVICE_ORDER=PCI_BUS_ID, so that CUDA numbers the devices the same way (its default, fastest first, may not).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from typing import Any

from flctl.node.site.placement import Gpu

log = logging.getLogger("flctl.site")
QUERY = ["--query-gpu=index,name,memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"]
TIMEOUT_S = 10.0
TORCH_TIMEOUT_S = 60.0


def list_gpus() -> tuple[list[Gpu], str]:
    """This machine's GPUs, and what told us ('nvml', 'nvidia-smi', 'torch', or '' when nothing could: none)."""
    for source, probe in (("nvml", _nvml), ("nvidia-smi", _nvidia_smi), ("torch", _torch)):
        found = probe()
        if found is not None:
            return found, source
    return [], ""


def gpu_usage(indices: list[int]) -> dict[int, Gpu]:
    """Used and free memory of these GPUs now (NVML, else nvidia-smi; torch is not asked: it would hold a context
    on every GPU). Empty when neither answers."""
    if not indices:
        return {}
    for probe in (_nvml, _nvidia_smi):
        found = probe()
        if found is not None:
            return {g.index: g for g in found if g.index in indices}
    return {}


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=index,name,memory.total,memory.used,memory.free --format=csv,noheader,nounits`'s
    output; a line it cannot read (say, `[N/A]` memory) keeps what it can, 0 for the rest."""
    gpus = []
    for line in text.splitlines():
        if line.count(",") < 4:
            continue
        head, total, used, free = line.rsplit(",", 3)
        index, name = (c.strip() for c in head.split(",", 1))
        if index.isdigit():
            gpus.append(Gpu(int(index), name, _mib(total.strip()), _mib(used.strip()), _mib(free.strip())))
    return gpus


def _mib(cell: str) -> int:
    try:
        return max(0, round(float(cell)))
    except ValueError:
        return 0


def _nvidia_smi() -> list[Gpu] | None:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, *QUERY], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi did not answer: %s", exc)
        return None
    if done.returncode != 0:  # no driver loaded, no device: it says so on stdout or stderr
        log.info("nvidia-smi found no GPU (exit %d): %s", done.returncode,
                 (done.stderr or done.stdout).strip().splitlines()[:1])
        return None
    return parse_nvidia_smi(done.stdout)


def _nvml() -> list[Gpu] | None:
    import importlib

    try:
        pynvml: Any = importlib.import_module("pynvml")  # nvidia-ml-py (untyped)
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(Gpu(index, name.decode() if isinstance(name, bytes) else str(name), memory.total >> 20,
                            memory.used >> 20, memory.free >> 20))
        return gpus
    except pynvml.NVMLError as exc:
        log.warning("NVML could not read the GPUs: %s", exc)
        return None
    finally:
        pynvml.nvmlShutdown()


TORCH_PROBE = """
import json, torch
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(json.dumps([i, p.name, p.total_memory >> 20]))
else:
    print("none")
"""
"""Run in a child process: importing torch would cost the site daemon its memory, and asking CUDA about a device
would hold a context (hundreds of MB of GPU memory) on it for as long as the daemon runs."""


def _torch() -> list[Gpu] | None:
    """torch's view, only where torch is installed and sees CUDA (it numbers devices as CUDA_VISIBLE_DEVICES and
    CUDA_DEVICE_ORDER say), asked in a child process."""
    import importlib.util
    import json
    import sys

    if importlib.util.find_spec("torch") is None:
        return None
    try:
        done = subprocess.run([sys.executable, "-c", TORCH_PROBE], capture_output=True, text=True,
                              timeout=TORCH_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("torch did not say which GPUs it sees: %s", exc)
        return None
    if done.returncode != 0 or done.stdout.strip() in ("", "none"):
        return None
    try:
        return [Gpu(int(i), str(name), int(total)) for i, name, total in map(json.loads, done.stdout.split("\n")[:-1])]
    except (ValueError, TypeError):
        log.warning("torch's GPU list cannot be read: %s", done.stdout[:200])
        return None
