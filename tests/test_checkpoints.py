"""flctl.node.jobs.checkpoints: which round checkpoints a job keeps. Every one without `keep`; with it, the newest
K rounds' models and states, whatever the numbering; `final` and other names never; a file already gone is no
error; the last round is what a restarted server or `simulate --resume` goes on from."""

from __future__ import annotations

import io
import queue
from pathlib import Path

import numpy as np
import pytest

from flctl.node.jobs import checkpoints
from flctl.node.server.job_process import PipeFederation
from flctl.node.wire import tensors
from flctl.node.workflows.state import WorkflowState, state_path


def saved(job_dir: Path, rounds: list[int]) -> None:
    for folder in ("models", "state"):
        (job_dir / folder).mkdir(parents=True, exist_ok=True)
        for round_no in rounds:
            (job_dir / folder / f"round-{round_no}.safetensors").write_bytes(b"x")
    (job_dir / "models" / "final.safetensors").write_bytes(b"f")
    (job_dir / "models" / "round-x.safetensors").write_bytes(b"?")  # not a round's: never counted or removed


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize(("keep", "left"), [(None, [0, 1, 2, 5, 10]), (1, [10]), (2, [5, 10]), (5, [0, 1, 2, 5, 10]),
                                            (9, [0, 1, 2, 5, 10])])
def test_prune_keeps_the_newest_rounds_model_and_state(tmp_path: Path, keep: int | None, left: list[int]) -> None:
    saved(tmp_path, [0, 1, 2, 5, 10])  # numbered with gaps, 10 after 5 (not as text: "10" < "5")
    gone = checkpoints.prune(tmp_path, keep)
    assert gone == [r for r in [0, 1, 2, 5, 10] if r not in left]
    assert checkpoints.saved_rounds(tmp_path) == left
    assert names(tmp_path / "state") == sorted(f"round-{r}.safetensors" for r in left)
    assert {"final.safetensors", "round-x.safetensors"} <= set(names(tmp_path / "models"))
    assert checkpoints.last_round(tmp_path) == 10


def test_a_state_or_model_already_gone_is_no_error(tmp_path: Path) -> None:
    saved(tmp_path, [0, 1, 2])
    (tmp_path / "state" / "round-0.safetensors").unlink()
    assert checkpoints.prune(tmp_path, 1) == [0, 1]
    assert checkpoints.prune(tmp_path, 1) == []
    assert checkpoints.last_round(tmp_path / "nothing") is None
    assert [checkpoints.round_of(n) for n in ("round-3", "final", "round-", "round-1a", "task-round-2")] == \
        [3, None, None, None, None]


def test_the_server_job_process_keeps_what_the_job_asks(tmp_path: Path) -> None:
    """Five rounds saved with state, then `final` as the last round's link, with `keep: 2`: rounds 3 and 4 stay,
    final is the last round's model; a model the workflow mapped before its name went still reads."""
    fed = PipeFederation("j", tmp_path, ["site-1"], io.StringIO(), queue.Queue())
    fed.keep_rounds = 2
    models = [{"w": np.full(4, r, np.float32)} for r in range(5)]
    mapped = None
    for round_no, params in enumerate(models):
        fed.save_state(f"round-{round_no}", WorkflowState(arrays={"m": params["w"]}))
        fed.save_model(f"round-{round_no}", params)
        if round_no == 0:
            mapped = fed.load_model("round-0")
    fed.save_model("final", models[-1], saved_as="round-4")

    assert names(tmp_path / "models") == ["final.safetensors", "round-3.safetensors", "round-4.safetensors"]
    assert [state_path(tmp_path, f"round-{r}").is_file() for r in range(5)] == [False, False, False, True, True]
    assert (tmp_path / "models" / "final.safetensors").samefile(tmp_path / "models" / "round-4.safetensors")
    assert np.array_equal(tensors.read_file(tmp_path / "models" / "final.safetensors")["w"], models[4]["w"])
    assert mapped is not None and np.array_equal(np.asarray(mapped["w"]), models[0]["w"])


def test_without_keep_every_round_stays(tmp_path: Path) -> None:
    fed = PipeFederation("j", tmp_path, ["site-1"], io.StringIO(), queue.Queue())
    for round_no in range(3):
        fed.save_model(f"round-{round_no}", {"w": np.zeros(2, np.float32)})
    assert checkpoints.saved_rounds(tmp_path) == [0, 1, 2]
