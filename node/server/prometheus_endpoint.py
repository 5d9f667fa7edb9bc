"""The server's Prometheus endpoint: `http://METRICS_HOST:METRICS_PORT/metrics`, opt-in (`metrics_port` in the
server's `local/resources.yml`; off by default; 127.0.0.1 unless `metrics_host` says otherwise).

Every value is worked out when Prometheus scrapes, from what the server keeps anyway (the store's site registry,
jobs and events, the certificates it knows, the traffic counters): nothing is added to the paths that serve sites.
prometheus-client (the telemetry extra) is imported only when the endpoint is switched on.

    flctl_sites_known / flctl_sites_online                    gauges
    flctl_site_online{site}, flctl_site_heartbeat_age_seconds{site}
    flctl_jobs{state}                                         jobs by state (submitted, running, finished...)
    flctl_round_duration_seconds                              histogram: first task of a round to its end
    flctl_model_bytes_sent_total, flctl_model_bytes_received_total   counters since the server started
    flctl_certificate_days_left{name,kind}                    every participant's certificate the server knows
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flctl.node.errors import NodeError
from flctl.node.jobs.job_status import JobStatus
from flctl.node.server.certificates import known_certificates, own_certificate
from flctl.node.server.context import ServerContext
from flctl.node.server.store import EventRow

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

ROUND_BUCKETS_S = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass
class RoundTimes:
    """Pure: rounds' durations from job events, fed a few events at a time (each scrape reads only the new ones).
    A round starts at its first `task` event and ends at its `round` event."""

    buckets: tuple[float, ...] = ROUND_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    count: int = 0
    total_s: float = 0.0
    started: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def feed(self, events: list[EventRow]) -> None:
        for event in events:
            number = event.data.get("round")
            if not isinstance(number, int):
                continue
            key = (event.job_id, number)
            if event.kind == "task":
                self.started.setdefault(key, event.time)
            elif event.kind == "round" and key in self.started:
                self.observe(event.time - self.started.pop(key))

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                self.counts[i] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' buckets: (upper bound, how many took at most that long), ending with +Inf."""
        return [*((f"{b:g}", float(n)) for b, n in zip(self.buckets, self.counts, strict=True)),
                ("+Inf", float(self.count))]


class FleetCollector:
    """A prometheus-client collector over the server's state (`collect` runs on each scrape)."""

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._rounds = RoundTimes()
        self._seq = 0
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # values are known only at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        ctx, now = self._ctx, time.time()
        sites = ctx.store.sites()
        online = GaugeMetricFamily("flctl_site_online", "1 when the site was heard from within the heartbeat "
                                   "timeout", labels=["site"])
        age = GaugeMetricFamily("flctl_site_heartbeat_age_seconds", "Seconds since the site's last heartbeat",
                                labels=["site"])
        up = 0
        for site in sites:
            is_up = ctx.online(site, now)
            up += is_up
            online.add_metric([site.name], float(is_up))
            age.add_metric([site.name], max(0.0, now - site.last_heartbeat))
        yield GaugeMetricFamily("flctl_sites_known", "Sites the server has registered", value=len(sites))
        yield GaugeMetricFamily("flctl_sites_online", "Sites heard from within the heartbeat timeout", value=up)
        yield online
        yield age
        jobs = GaugeMetricFamily("flctl_jobs", "Jobs by state", labels=["state"])
        by_state = dict.fromkeys((s.value for s in JobStatus if s != JobStatus.UNKNOWN), 0)
        for job in ctx.store.list_jobs():
            by_state[job.status.value] = by_state.get(job.status.value, 0) + 1
        for state, n in by_state.items():
            jobs.add_metric([state.lower()], n)
        yield jobs
        with self._lock:
            events = ctx.store.events(self._seq)
            if events:
                self._seq = events[-1].seq
            self._rounds.feed(events)
            rounds = HistogramMetricFamily("flctl_round_duration_seconds", "Time from a round's first task to its "
                                           "end", buckets=self._rounds.cumulative(), sum_value=self._rounds.total_s)
        yield rounds
        yield CounterMetricFamily("flctl_model_bytes_sent", "Model bytes sent to sites (tasks) since the server "
                                  "started", value=ctx.traffic.sent)
        yield CounterMetricFamily("flctl_model_bytes_received", "Model bytes received from sites (results) since "
                                  "the server started", value=ctx.traffic.received)
        certs = GaugeMetricFamily("flctl_certificate_days_left", "Days until the participant's certificate expires",
                                  labels=["name", "kind"])
        for cert in known_certificates(ctx.store, own_certificate(ctx.kit.info)):
            certs.add_metric([cert.name, cert.kind], (cert.not_after - now) / 86400)
        yield certs


class MetricsEndpoint:
    """The HTTP server prometheus-client runs in a thread of its own; `close` stops it."""

    def __init__(self, ctx: ServerContext, host: str, port: int) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise NodeError("metrics_port is set in the server's local/resources.yml, but prometheus-client is not "
                            "installed; install the telemetry extra (pip install 'flctl[telemetry]') or remove "
                            "metrics_port") from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetCollector(ctx))
        try:
            self._server: WSGIServer
            self._server, _thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise NodeError(f"cannot serve Prometheus metrics on {host}:{port} ({exc.strerror or exc}); change "
                            "metrics_port in the server's local/resources.yml") from None
        self.address = f"{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
