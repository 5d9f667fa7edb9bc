"""A site's resources on the wire: `placement.SiteLoad` to and from `pb.SiteResources` (heartbeats, site listings)."""

from __future__ import annotations

from flctl.node.site.placement import Capacity, Gpu, Grant, SiteLoad
from flctl.node.wire.proto import flctl_pb2 as pb


def load_to_pb(load: SiteLoad) -> pb.SiteResources:
    cap = load.capacity
    return pb.SiteResources(
        cpus=list(cap.cpus), memory_mb=cap.memory_mb, gpu_sharing=cap.gpu_sharing, manages_gpus=cap.manages_gpus,
        gpus=[pb.GpuInfo(index=g.index, name=g.name, memory_mb=g.memory_mb, used_mb=g.used_mb, free_mb=g.free_mb)
              for g in cap.gpus],
        grants=[pb.ResourceGrant(job_id=g.job_id, cpus=list(g.cpus), memory_mb=g.memory_mb, gpus=list(g.gpus),
                                 gpu_memory_mb=g.gpu_memory_mb) for g in load.grants],
        queued=load.queued)


MAX_CPUS = 1 << 16
MAX_GPUS = 1024
MAX_GRANTS = 10_000
MAX_NAME_CHARS = 256


class ResourcesRefused(ValueError):
    """A site's report of its resources that no real site sends (a peer's message: never trusted as it comes)."""


def check(msg: pb.SiteResources) -> None:
    """ResourcesRefused naming the first thing out of bounds: more cores, GPUs or grants than a machine has, a
    negative amount, a GPU name too long or holding control characters (it is shown in terminals)."""
    if len(msg.cpus) > MAX_CPUS or len(msg.gpus) > MAX_GPUS or len(msg.grants) > MAX_GRANTS:
        raise ResourcesRefused(f"{len(msg.cpus)} cores, {len(msg.gpus)} GPUs, {len(msg.grants)} jobs held (at most "
                               f"{MAX_CPUS}, {MAX_GPUS}, {MAX_GRANTS})")
    numbers = [msg.memory_mb, msg.queued, *msg.cpus]
    for g in msg.gpus:
        numbers += [g.index, g.memory_mb, g.used_mb, g.free_mb]
        if len(g.name) > MAX_NAME_CHARS or not g.name.isprintable():
            raise ResourcesRefused(f"GPU {g.index}'s name is longer than {MAX_NAME_CHARS} characters or holds "
                                   "control characters")
    for grant in msg.grants:
        numbers += [grant.memory_mb, grant.gpu_memory_mb, *grant.cpus, *grant.gpus]
    if any(n < 0 for n in numbers):
        raise ResourcesRefused("a negative core, GPU index, count or amount of memory")


def load_from_pb(msg: pb.SiteResources) -> SiteLoad:
    """The SiteLoad of a report; ResourcesRefused when it is out of bounds (see `check`)."""
    check(msg)
    gpus = tuple(Gpu(g.index, g.name, g.memory_mb, g.used_mb, g.free_mb) for g in msg.gpus)
    capacity = Capacity(tuple(msg.cpus), msg.memory_mb, gpus, msg.gpu_sharing, msg.manages_gpus)
    grants = tuple(Grant(g.job_id, tuple(g.cpus), g.memory_mb, tuple(g.gpus), g.gpu_memory_mb) for g in msg.grants)
    return SiteLoad(capacity, grants, msg.queued)


def reported(msg: pb.RegisterRequest | pb.HeartbeatRequest | pb.SiteInfo) -> SiteLoad | None:
    """The resources a message carries, or None when it carries none (a site from before they were reported);
    ResourcesRefused when they are out of bounds."""
    return load_from_pb(msg.resources) if msg.HasField("resources") else None
