"""A site's reported resources as the CLI and the TUI show them (pure): one short cell for its GPUs, and the JSON
that `flctl site ls --json` gives."""

from __future__ import annotations

from typing import Any

from flctl.node.site.placement import SiteLoad


def gpu_cell(load: SiteLoad | None) -> str:
    """`1/2 used, 61 GiB free` (GPUs a job holds of those offered, free memory as the driver says); `none` for a
    site that offers none; `-` when it reported nothing."""
    if load is None:
        return "-"
    gpus = load.capacity.gpus
    if not gpus:
        return "none"
    used = sum(1 for g in gpus if load.gpu_jobs(g.index))
    cell = f"{used}/{len(gpus)} used"
    if any(g.free_mb for g in gpus):
        cell += f", {sum(g.free_mb for g in gpus) / 1024:.0f} GiB free"
    return cell


def resources_json(load: SiteLoad | None) -> dict[str, Any] | None:
    """What the site offers and what its jobs hold: cores, memory in MiB, each GPU with its jobs and memory."""
    if load is None:
        return None
    cap = load.capacity
    return {
        "cpus": len(cap.cpus), "cpus_free": load.free_cpus(), "memory_mb": cap.memory_mb,
        "memory_free_mb": load.free_memory_mb(), "gpu_sharing": cap.gpu_sharing, "queued": load.queued,
        "gpus": [{"index": g.index, "name": g.name, "memory_mb": g.memory_mb, "used_mb": g.used_mb,
                  "free_mb": g.free_mb, "jobs": load.gpu_jobs(g.index)} for g in cap.gpus],
        "jobs": {g.job_id: {"cpus": list(g.cpus), "memory_mb": g.memory_mb, "gpus": list(g.gpus),
                            "gpu_memory_mb": g.gpu_memory_mb} for g in load.grants},
    }
