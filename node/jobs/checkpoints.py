"""A job's round checkpoints on disk, at the server and in a simulation's output: `models/round-N.safetensors`
(the global model after round N) with, for a stateful workflow, `state/round-N.safetensors` beside it.

A restarted server and `flctl simulate --resume` go on from the last one (`last_round`). Every one is kept unless
the job asks for fewer (job.yml `checkpoints: {keep: K}`): then, each time a round's checkpoint is saved, the
older ones beyond the newest K are removed (`prune`), model and state; `final` is a name of its own (a hard link
when it is the last round's), so it is never removed. A model a workflow still maps stays readable after its
name is removed (the file lives on until it is unmapped).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

_ROUND = re.compile(r"round-(\d+)")


def saved_rounds(job_dir: Path) -> list[int]:
    """The rounds whose global model is saved in `job_dir/models`, oldest first."""
    found = (_ROUND.fullmatch(path.stem) for path in (job_dir / "models").glob("round-*.safetensors"))
    return sorted(int(match.group(1)) for match in found if match)


def last_round(job_dir: Path) -> int | None:
    """The last round whose global model was saved, or None."""
    rounds = saved_rounds(job_dir)
    return rounds[-1] if rounds else None


def round_of(name: str) -> int | None:
    """N for a checkpoint's name `round-N`; None for any other name (`final`, a task's)."""
    match = _ROUND.fullmatch(name)
    return int(match.group(1)) if match else None


def prune(job_dir: Path, keep: int | None) -> list[int]:
    """Remove the model and state of every saved round but the newest `keep` (None: keep them all); the rounds
    removed. A file already gone is no error (a restarted job prunes again)."""
    if keep is None:
        return []
    rounds = saved_rounds(job_dir)
    gone = rounds[:-keep] if keep else rounds
    for round_no in gone:
        for folder in ("models", "state"):
            with contextlib.suppress(FileNotFoundError):
                (job_dir / folder / f"round-{round_no}.safetensors").unlink()
    return gone
