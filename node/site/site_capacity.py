"""What this site offers jobs (`placement.Capacity`), from its `local/resources.yml` and the machine: the cores it
may run on, its physical memory and its GPUs (`gpu_inventory`). Read once, when the site agent starts; a GPU index
the file lists that the machine does not have stops the site with a KitError (exit 2) naming the file and key."""

from __future__ import annotations

import logging
import os
import re
import zlib
from pathlib import Path

from flctl.node.config.resources import Resources
from flctl.node.site import gpu_inventory
from flctl.node.site.placement import MIB_PER_GIB, Capacity, Gpu
from flctl.provisioner.errors import KitError

log = logging.getLogger("flctl.site")


def machine_cpus() -> tuple[int, ...]:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def machine_memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))
    except (ValueError, OSError, AttributeError):
        return 0


def site_capacity(resources: Resources, path: Path, site: str = "") -> Capacity:
    """The capacity `resources` (read from `path`) describes on this machine, for `site` (its cores in the order it
    gives them out: `first_core`)."""
    cores = machine_cpus()
    if resources.cpus is not None:
        cores = cores[:max(1, int(resources.cpus))]
    start = first_core(site, len(cores))
    cores = cores[start:] + cores[:start]
    memory = resources.memory_mb if resources.memory_mb is not None else machine_memory_mb()
    gpus = _gpus(resources, path)
    if resources.gpu_memory_gb:
        gpus = [Gpu(g.index, g.name, round(resources.gpu_memory_gb * MIB_PER_GIB), g.used_mb, g.free_mb) for g in gpus]
    return Capacity(cores, memory, tuple(gpus), resources.gpu_sharing, manages_gpus=bool(gpus))


def first_core(site: str, count: int) -> int:
    """Where `site` starts giving out its cores: sites sharing a machine (a local federation's site-1, site-2...)
    would otherwise all pin their first jobs to core 0. The number a name ends with, else a hash of the name."""
    if count <= 1 or not site:
        return 0
    digits = re.search(r"(\d+)$", site)
    return (int(digits.group(1)) if digits else zlib.crc32(site.encode())) % count


def _gpus(resources: Resources, path: Path) -> list[Gpu]:
    if resources.gpus == ():
        return []
    found, source = gpu_inventory.list_gpus()
    if resources.gpus is None:  # auto
        log.info("gpus: auto found %s", ", ".join(f"{g.index} ({g.name}, {g.memory_mb} MiB)" for g in found) + (
            f" through {source}" if found else "no GPU (no NVML, nvidia-smi or CUDA torch answered)"))
        return found
    if not source:  # nothing to check the list against: the site's word, memory as gpu_memory_gb says
        log.warning("%s lists GPUs %s but nothing here (NVML, nvidia-smi, torch) sees a GPU; taking the list as it is",
                    path, list(resources.gpus))
        return [Gpu(i) for i in resources.gpus]
    by_index = {g.index: g for g in found}
    missing = [i for i in resources.gpus if i not in by_index]
    if missing:
        raise KitError(f"{path}: gpus lists {', '.join(map(str, missing))}, but {source} shows "
                       f"{'GPUs ' + ', '.join(str(g.index) for g in found) if found else 'no GPU'}; list those this "
                       "site offers (or gpus: auto)")
    return [by_index[i] for i in resources.gpus]
