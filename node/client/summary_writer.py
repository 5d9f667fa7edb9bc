"""`fl.summary_writer()`: TensorBoard's `SummaryWriter`, as far as scalars go, for a training script; every value
goes through `fl.log` to the server, which records it (`flctl job metrics`) and exports it (TensorBoard event
files, MLflow, W&B: `flctl.node.server.metrics_export`). A script written for TensorBoard changes one line:

    writer = fl.summary_writer()               # was: torch.utils.tensorboard.SummaryWriter()
    writer.add_scalar("loss", loss, global_step=epoch)
    writer.add_scalars("acc", {"train": a, "val": b}, epoch)     # recorded as acc/train and acc/val
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

LogFn = Callable[[str, float, "int | None"], None]


class SummaryWriter:
    """Scalars as `fl.log` values: a tag is the metric's name, `global_step` its step (none: the round)."""

    def __init__(self, log: LogFn) -> None:
        self._log = log

    def add_scalar(self, tag: str, scalar_value: Any, global_step: Any = None, walltime: float | None = None,
                   **_ignored: Any) -> None:
        """Record `scalar_value` (a number, numpy scalar or one-element tensor) as metric `tag`; the server stamps
        its own time, so `walltime` is not used."""
        self._log(tag, scalar_value, _step(global_step))

    def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, Any], global_step: Any = None,
                    walltime: float | None = None) -> None:
        """Record each value of `tag_scalar_dict` as metric `main_tag/name`."""
        for name, value in tag_scalar_dict.items():
            self._log(f"{main_tag}/{name}", value, _step(global_step))

    def flush(self) -> None:
        """Nothing is held back: each value goes to the site as it is added."""

    def close(self) -> None:
        """Nothing to close (the writer holds no file)."""

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _step(global_step: Any) -> int | None:
    """A step as `fl.log` takes it: an int from an int, a numpy integer or a one-element tensor; None stays None."""
    return None if global_step is None else int(global_step)
