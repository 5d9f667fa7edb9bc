"""Exporters that never fail a job: each is opened, fed and closed behind `Guarded`, whose first failure is one
line in the job's log (`say`) and leaves that exporter out for the rest of the job. Used by the server's exporter
process (`feeder`, as metrics arrive) and by the simulator (`export_all`, once the run is over)."""

from __future__ import annotations

from collections.abc import Callable

from flctl.node.jobs.metrics_spec import MetricsSpec
from flctl.node.server.metrics_export import EXPORTERS, title
from flctl.node.server.metrics_export.base import Exporter, JobContext, MetricPoint

Say = Callable[[str], None]


def short(exc: Exception) -> str:
    """An exception's text on one line, cut (a library's message may hold a whole HTTP response)."""
    return " ".join(str(exc).split())[:300]


class Guarded:
    """An exporter that, once it fails, is named in the job's log and left out (it never fails the job)."""

    def __init__(self, exporter: Exporter, say: Say, kept: str) -> None:
        self.exporter = exporter
        self._say = say
        self._kept = kept  # where the metrics stay whatever happens here
        self.failed = False

    def _failed(self, doing: str, exc: Exception) -> None:
        self.failed = True
        self._say(f"metrics export to {self.exporter.name} failed while {doing} ({type(exc).__name__}: "
                  f"{short(exc)}); nothing more goes there for this job; its metrics stay in {self._kept}")

    def write(self, points: list[MetricPoint]) -> None:
        if not self.failed:
            try:
                self.exporter.write(points)
            except Exception as exc:  # noqa: BLE001 - whatever an exporter's library raises, the job goes on
                self._failed("exporting", exc)

    def close(self, status: str) -> None:
        if not self.failed:
            try:
                self.exporter.close(status)
            except Exception as exc:  # noqa: BLE001 - as in write
                self._failed("closing", exc)


def open_exporters(spec: MetricsSpec, job: JobContext, say: Say, kept: str) -> list[Guarded]:
    """Every exporter `spec` turns on; one that cannot start (a missing package, a server that cannot be reached)
    is named in the log and left out."""
    opened = []
    for name in spec.exporters():
        try:
            opened.append(Guarded(EXPORTERS[name](job, spec), say, kept))
        except Exception as exc:  # noqa: BLE001 - the job goes on without it
            say(f"metrics export to {title(name, spec)} failed ({type(exc).__name__}: {short(exc)}); the job's "
                f"metrics stay in {kept}")
    if opened:
        say("metrics export to " + ", ".join(g.exporter.name for g in opened))
    return opened


def export_all(spec: MetricsSpec, job: JobContext, points: list[MetricPoint], status: str, say: Say,
               kept: str) -> None:
    """A run that is over, exported at once (the simulator's)."""
    for exporter in open_exporters(spec, job, say, kept):
        exporter.write(points)
        exporter.close(status)
