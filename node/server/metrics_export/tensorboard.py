"""TensorBoard: the job's metrics as event files in `JOB_DIR/tb/<site>/`, one run per site, tagged by metric name,
the script's step (else the round) on the x axis. `tensorboard --logdir JOB_DIR/tb` shows them; `flctl job
download` brings the folder along."""

from __future__ import annotations

from flctl.node.server.metrics_export.base import JobContext, MetricPoint
from flctl.node.server.metrics_export.event_file import EventFileWriter

TB_FOLDER = "tb"


class TensorBoardExporter:
    def __init__(self, job: JobContext) -> None:
        self.name = "TensorBoard"
        self._root = job.job_dir / TB_FOLDER
        self._writers: dict[str, EventFileWriter] = {}

    def _writer(self, site: str) -> EventFileWriter:
        if site not in self._writers:  # site names are checked names (no '/', no '..'): a folder each
            self._writers[site] = EventFileWriter(self._root / site)
        return self._writers[site]

    def write(self, points: list[MetricPoint]) -> None:
        for point in points:
            self._writer(point.site).add_scalar(point.name, point.value, point.x, point.time)
        for writer in self._writers.values():
            writer.flush()

    def close(self, status: str) -> None:
        for writer in self._writers.values():
            writer.close()
