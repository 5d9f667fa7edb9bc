"""Placing a job at a site: which CPU cores, how much memory and which GPUs it is given, or why it must wait or can
never run there. Pure logic: the site agent holds the grants and applies them, the server's scheduler runs the same
functions over what each site reports in its heartbeats.

A job asks in job.yml (`resources: {cpus, memory_mb, gpus, gpu_memory_gb}`), and asks only what it states: a job
without a resources block asks nothing and runs as it always did. A site offers what its `local/resources.yml`
says (`cpus`, `memory_mb`, `gpus`, `gpu_memory_gb`, `gpu_sharing`), and running jobs hold what they were granted:
- cores: a job asking `cpus: N` is given N cores of the site's no other job holds (its process is pinned to them);
- memory: the memory held by running jobs plus the ask stays within the site's `memory_mb`;
- GPUs: a job asking `gpus: N` is given N GPUs no other job holds, each with at least `gpu_memory_gb`; where the
  site allows sharing (`gpu_sharing: true`), a GPU takes more jobs while the memory they ask of it fits its memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flctl.node.jobs.job_spec import Resources as JobResources

MIB_PER_GIB = 1024


@dataclass(frozen=True)
class Gpu:
    """One GPU of a site: its index (nvidia-smi's, PCI bus order), name and memory in MiB (0: not known)."""

    index: int
    name: str = ""
    memory_mb: int = 0
    used_mb: int = 0
    """In use on the device now, by anyone (NVML or nvidia-smi); 0 when not known."""
    free_mb: int = 0
    """Free on the device now (NVML or nvidia-smi); 0 when not known."""


@dataclass(frozen=True)
class Capacity:
    """What a site offers its jobs."""

    cpus: tuple[int, ...]
    """The cores a job may be pinned to."""
    memory_mb: int
    gpus: tuple[Gpu, ...] = ()
    gpu_sharing: bool = False
    manages_gpus: bool = False
    """The site lists GPUs (`gpus: auto` found some, or a list): a job sees only the GPUs it was given."""

    def gpu(self, index: int) -> Gpu | None:
        return next((g for g in self.gpus if g.index == index), None)


@dataclass(frozen=True)
class Ask:
    """What a job asks of each site (0: nothing of that)."""

    cpus: int = 0
    memory_mb: int = 0
    gpus: int = 0
    gpu_memory_mb: int = 0
    """On each of its GPUs."""

    @classmethod
    def of(cls, resources: JobResources) -> Ask:
        """The ask of job.yml's `resources`: only the keys the job stated (none stated: an empty ask)."""
        stated = resources.model_fields_set
        return cls(cpus=resources.cpus if "cpus" in stated else 0,
                   memory_mb=resources.memory_mb if "memory_mb" in stated else 0,
                   gpus=resources.gpus if "gpus" in stated else 0,
                   gpu_memory_mb=round(resources.gpu_memory_gb * MIB_PER_GIB) if "gpu_memory_gb" in stated else 0)

    @property
    def empty(self) -> bool:
        return not (self.cpus or self.memory_mb or self.gpus)

    def describe(self) -> str:
        parts = [f"{self.cpus} CPUs" if self.cpus else "",
                 _size(self.memory_mb) + " of memory" if self.memory_mb else "",
                 f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}" if self.gpus else "",
                 f"{_size(self.gpu_memory_mb)} on each GPU" if self.gpu_memory_mb else ""]
        return ", ".join(p for p in parts if p) or "nothing"


@dataclass(frozen=True)
class Grant:
    """What a job was given at a site and holds until its process ends."""

    job_id: str
    cpus: tuple[int, ...] = ()
    memory_mb: int = 0
    gpus: tuple[int, ...] = ()
    gpu_memory_mb: int = 0
    """Asked of each of `gpus` (where the site shares GPUs, what others may still ask is what remains)."""


@dataclass(frozen=True)
class SiteLoad:
    """A site's capacity and its running jobs' grants: what it reports in each heartbeat."""

    capacity: Capacity
    grants: tuple[Grant, ...] = field(default_factory=tuple)
    queued: int = 0
    """Jobs waiting at the site for their resources."""

    def free_cpus(self) -> int:
        held = {c for g in self.grants for c in g.cpus}
        return len([c for c in self.capacity.cpus if c not in held])

    def free_memory_mb(self) -> int:
        return self.capacity.memory_mb - sum(g.memory_mb for g in self.grants)

    def gpu_jobs(self, index: int) -> list[str]:
        return [g.job_id for g in self.grants if index in g.gpus]


def never_fits(capacity: Capacity, ask: Ask) -> str:
    """Why the job can never run at this site, even with nothing else running ('' when it can)."""
    if ask.cpus > len(capacity.cpus):
        return f"the job asks {ask.cpus} CPUs; this site offers {len(capacity.cpus)}"
    if ask.memory_mb > capacity.memory_mb:
        return f"the job asks {_size(ask.memory_mb)} of memory; this site offers {_size(capacity.memory_mb)}"
    if ask.gpus > len(capacity.gpus):
        offered = f"{len(capacity.gpus)}" if capacity.gpus else "none (gpus in its local/resources.yml)"
        return f"the job asks {ask.gpus} GPU{'s' if ask.gpus > 1 else ''}; this site offers {offered}"
    if ask.gpus and len(_big_enough(capacity, ask)) < ask.gpus:
        biggest = max(g.memory_mb for g in capacity.gpus)
        its = f"each of its {ask.gpus} GPUs" if ask.gpus > 1 else "its GPU"
        return f"the job asks {_size(ask.gpu_memory_mb)} on {its}; this site's GPUs have at most {_size(biggest)}"
    return ""


def place(load: SiteLoad, ask: Ask, job_id: str) -> Grant | None:
    """The grant for the job given what running jobs hold, or None when it does not fit now."""
    if never_fits(load.capacity, ask):
        return None
    held_cpus = {c for g in load.grants for c in g.cpus}
    free_cpus = [c for c in load.capacity.cpus if c not in held_cpus]
    if len(free_cpus) < ask.cpus or ask.memory_mb > load.free_memory_mb():
        return None
    gpus = _free_gpus(load, ask)
    if len(gpus) < ask.gpus:
        return None
    return Grant(job_id, tuple(free_cpus[:ask.cpus]), ask.memory_mb, tuple(gpus[:ask.gpus]), ask.gpu_memory_mb)


def why_waiting(load: SiteLoad, ask: Ask) -> str:
    """What the job waits for at this site (for `job show`); '' when it fits now."""
    if load.free_cpus() < ask.cpus:
        cpus = f"{ask.cpus} free CPU{'s' if ask.cpus > 1 else ''}"
        return f"{cpus} ({load.free_cpus()} of {len(load.capacity.cpus)} free)"
    if ask.memory_mb > load.free_memory_mb():
        return f"{_size(ask.memory_mb)} of free memory ({_size(load.free_memory_mb())} free)"
    if len(_free_gpus(load, ask)) < ask.gpus:
        busy = sorted({g.job_id for g in load.grants if g.gpus})
        return (f"{ask.gpus} free GPU{'s' if ask.gpus > 1 else ''} ({len(_free_gpus(load, ask))} free; held by "
                f"{', '.join(busy) or 'no job'})")
    return ""


def cuda_visible(capacity: Capacity, grant: Grant | None) -> str | None:
    """CUDA_VISIBLE_DEVICES for the job's script: its GPUs ('' for none) where the site lists GPUs; None where it
    lists none (the variable is left as the site's environment and job_env_allow make it)."""
    if not capacity.manages_gpus:
        return None
    return ",".join(str(i) for i in grant.gpus) if grant is not None else ""


def _big_enough(capacity: Capacity, ask: Ask) -> list[Gpu]:
    """The GPUs whose memory can hold the ask (all, when the ask or a GPU's memory is not known)."""
    return [g for g in capacity.gpus if not ask.gpu_memory_mb or not g.memory_mb or g.memory_mb >= ask.gpu_memory_mb]


def _free_gpus(load: SiteLoad, ask: Ask) -> list[int]:
    """The indices of GPUs the job could be given now, the least loaded first."""
    if not ask.gpus:
        return []
    free: list[tuple[int, int]] = []
    for gpu in _big_enough(load.capacity, ask):
        holders = [g for g in load.grants if gpu.index in g.gpus]
        if not holders:
            free.append((0, gpu.index))
        elif load.capacity.gpu_sharing and _shares(gpu, holders, ask):
            free.append((sum(h.gpu_memory_mb for h in holders) or len(holders), gpu.index))
    return [index for _, index in sorted(free)]


def _shares(gpu: Gpu, holders: Sequence[Grant], ask: Ask) -> bool:
    """Whether a shared GPU takes one more job: the memory asked of it fits (any number when none was asked or the
    GPU's memory is not known)."""
    asked = sum(h.gpu_memory_mb for h in holders) + ask.gpu_memory_mb
    return not gpu.memory_mb or asked <= gpu.memory_mb


def _size(mib: int) -> str:
    if mib >= 1024 * 1024:
        return f"{mib / (1024 * 1024):.1f} TiB"
    if mib >= 1024:
        return f"{mib / 1024:.1f} GiB"
    return f"{mib} MiB"
