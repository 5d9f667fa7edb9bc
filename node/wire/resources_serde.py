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


def load_from_pb(msg: pb.SiteResources) -> SiteLoad:
    gpus = tuple(Gpu(g.index, g.name, g.memory_mb, g.used_mb, g.free_mb) for g in msg.gpus)
    capacity = Capacity(tuple(msg.cpus), msg.memory_mb, gpus, msg.gpu_sharing, msg.manages_gpus)
    grants = tuple(Grant(g.job_id, tuple(g.cpus), g.memory_mb, tuple(g.gpus), g.gpu_memory_mb) for g in msg.grants)
    return SiteLoad(capacity, grants, msg.queued)


def reported(msg: pb.RegisterRequest | pb.HeartbeatRequest | pb.SiteInfo) -> SiteLoad | None:
    """The resources a message carries, or None when it carries none (a site from before they were reported)."""
    return load_from_pb(msg.resources) if msg.HasField("resources") else None
