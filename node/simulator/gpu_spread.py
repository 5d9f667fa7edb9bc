"""`flctl simulate --gpus 0,1`: which GPUs each simulated site's worker sees (pure, but for `check_listed`).

Each site takes the GPUs its job asks for (`resources.gpus`, 1 when it states none), so the GPUs given form groups
of that many; the local engine starts a worker per group, each seeing only its group through CUDA_VISIBLE_DEVICES,
and sites go to the workers in turn (site i to worker i mod workers). A GPU thus holds ceil(sites / groups) sites at
once; with the job's `gpu_memory_gb` and the GPUs' memory known, more than fits is refused before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flctl.node.site.placement import MIB_PER_GIB, Ask, Gpu


class GpuSpreadError(ValueError):
    """--gpus cannot hold the simulation as asked (a bad list, too few GPUs, too little memory)."""


@dataclass(frozen=True)
class Spread:
    groups: tuple[str, ...]
    """Each worker's CUDA_VISIBLE_DEVICES, in turn."""
    sites_per_group: int


def parse_gpus(text: str, name: str = "--gpus") -> tuple[int, ...]:
    """`0,1` as (0, 1); GpuSpreadError (naming the option or argument `name`) for anything but distinct indices."""
    cells = [c.strip() for c in text.split(",")]
    if not cells or not all(c.isdigit() for c in cells) or len(set(cells)) != len(cells):
        raise GpuSpreadError(f"{name} must list distinct GPU indices, e.g. 0,1, not {text!r}")
    return tuple(int(c) for c in cells)


def spread(gpus: tuple[int, ...], sites: int, ask: Ask, known: dict[int, Gpu] | None = None) -> Spread:
    """The worker groups for `sites` sites of a job asking `ask` on `gpus`; `known`: the GPUs' memory, by index."""
    per_site = max(1, ask.gpus)
    if len(gpus) < per_site:
        raise GpuSpreadError(f"the job asks {per_site} GPUs a site; --gpus gives {len(gpus)}")
    groups = tuple(",".join(map(str, gpus[i:i + per_site])) for i in range(0, len(gpus) - per_site + 1, per_site))
    at_once = math.ceil(sites / len(groups))
    if ask.gpu_memory_mb and known:
        for index in gpus[:len(groups) * per_site]:
            gpu = known.get(index)
            if gpu is not None and gpu.memory_mb and at_once * ask.gpu_memory_mb > gpu.memory_mb:
                fits = gpu.memory_mb // ask.gpu_memory_mb
                raise GpuSpreadError(
                    f"{sites} sites on {len(groups)} GPU group{'s' if len(groups) > 1 else ''} put {at_once} on GPU "
                    f"{index}, each asking {ask.gpu_memory_mb / MIB_PER_GIB:g} GiB of its "
                    f"{gpu.memory_mb / MIB_PER_GIB:g} GiB (it holds {fits}): give more GPUs or simulate fewer sites")
    return Spread(groups, at_once)


def check_listed(gpus: tuple[int, ...]) -> dict[int, Gpu]:
    """The GPUs of this machine by index; GpuSpreadError naming an index it does not have (nothing is checked where
    no GPU can be listed: CUDA_VISIBLE_DEVICES is set as given)."""
    from flctl.node.site.gpu_inventory import list_gpus

    found, source = list_gpus()
    if not source:
        return {}
    known = {g.index: g for g in found}
    missing = [i for i in gpus if i not in known]
    if missing:
        raise GpuSpreadError(f"--gpus names {', '.join(map(str, missing))}, but {source} shows "
                             f"{'GPUs ' + ', '.join(map(str, sorted(known))) if known else 'no GPU'}")
    return known
