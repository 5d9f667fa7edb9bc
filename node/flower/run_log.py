"""What `flwr run --stream` prints, read for flctl: each line for the job's server log, and each round's
aggregated metrics (`[ROUND n/N]`, then `Aggregated MetricRecord: {...}`) for flctl's round records. Pure: no I/O."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")
METRICS = re.compile(r"Aggregated MetricRecord: (\{.*\})")
RUN_ID = re.compile(r"Successfully started run (\d+)")
FAILED = re.compile(r"Traceback \(most recent call last\)|ServerApp .*(?:failed|exception)|run .* failed", re.I)
RAISED = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): ")
"""The last line of a traceback (`ValueError: ...`): what went wrong, for the job's error."""


@dataclass
class RunLog:
    """Reads the lines one by one; `rounds` gives each round's metrics once the round is over."""

    run_id: str = ""
    rounds_total: int = 0
    errors: list[str] = field(default_factory=list)
    _round: int = 0
    _metrics: dict[str, float] = field(default_factory=dict)
    _done: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def feed(self, raw: str) -> str:
        """Take one line; the line without its colour codes."""
        line = ANSI.sub("", raw).rstrip()
        if found := RUN_ID.search(line):
            self.run_id = found.group(1)
        elif found := ROUND.search(line):
            self._close_round()
            self._round, self.rounds_total = int(found.group(1)), int(found.group(2))
        elif found := METRICS.search(line):
            self._metrics.update(_numbers(found.group(1)))
        elif "Strategy execution finished" in line:
            self._close_round()
        elif FAILED.search(line) or (self.errors and RAISED.match(line)):
            self.errors.append(line.strip())
        return line

    @property
    def current_round(self) -> int:
        """The round under way, from 1 (0: none yet, or between rounds)."""
        return self._round

    def end(self) -> None:
        """The output has ended: the last round is over."""
        self._close_round()

    def rounds(self) -> list[tuple[int, dict[str, float]]]:
        """The rounds over since the last call: (round, counting from 0 as flctl does; metrics)."""
        done, self._done = self._done, []
        return done

    def _close_round(self) -> None:
        if self._round:
            self._done.append((self._round - 1, self._metrics))
        self._round, self._metrics = 0, {}


def _numbers(text: str) -> dict[str, float]:
    """The numeric entries of a printed MetricRecord (a Python dict literal); {} when it is not one."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)}
