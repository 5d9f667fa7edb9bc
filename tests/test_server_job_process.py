"""The server's job process: a round's task and the final model are the checkpoint the workflow saved, linked, not
written again."""

from __future__ import annotations

import io
import queue
from pathlib import Path

import numpy as np
import pytest

from flctl.node.jobs.tasks import Task
from flctl.node.server.job_messages import JOB_REQUESTS, AbortJob, JobAnswer, PostTask
from flctl.node.server.job_process import Aborted, PipeFederation
from flctl.node.wire import tensors


class Requests(io.StringIO):
    """The daemon's end of the pipe: notes, as each task is posted, whether its file is the checkpoint's."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.tasks: list[tuple[PostTask, bool]] = []

    def write(self, text: str) -> int:
        message = JOB_REQUESTS.decode(text)
        if isinstance(message, PostTask):
            self.tasks.append((message, Path(message.payload).samefile(self.checkpoint)))
        return len(text)


def post(fed: PipeFederation, inbox: queue.Queue[JobAnswer], task: Task) -> None:
    inbox.put(AbortJob(reason="the test has seen the task"))
    with pytest.raises(Aborted):
        list(fed.send(task, ["site-1"], 5.0))


@pytest.mark.parametrize("saved_as", ["round-0", ""])
def test_a_task_of_a_saved_model_is_a_link_to_its_checkpoint(tmp_path: Path, saved_as: str):
    params = {"w": np.arange(6, dtype=np.float32)}
    requests = Requests(tmp_path / "models" / "round-0.safetensors")
    inbox: queue.Queue[JobAnswer] = queue.Queue()
    fed = PipeFederation("j", tmp_path, ["site-1"], requests, inbox)
    fed.save_model("round-0", params)

    post(fed, inbox, Task("train", 1, params, saved_as=saved_as))

    [(message, linked)] = requests.tasks
    assert linked == bool(saved_as)
    assert not Path(message.payload).exists()  # the task's name goes with the round; the checkpoint stays
    assert np.array_equal(tensors.read_file(tmp_path / "models" / "round-0.safetensors")["w"], params["w"])


def test_a_task_whose_checkpoint_is_gone_is_written(tmp_path: Path):
    params = {"w": np.ones(3, dtype=np.float32)}
    written: list[dict[str, np.ndarray]] = []

    class Capture(io.StringIO):
        def write(self, text: str) -> int:
            message = JOB_REQUESTS.decode(text)
            if isinstance(message, PostTask):
                written.append(tensors.read_file(Path(message.payload)))
            return len(text)

    inbox: queue.Queue[JobAnswer] = queue.Queue()
    fed = PipeFederation("j", tmp_path, ["site-1"], Capture(), inbox)

    post(fed, inbox, Task("train", 1, params, saved_as="round-0"))  # never saved

    assert len(written) == 1 and np.array_equal(written[0]["w"], params["w"])


def test_the_final_model_is_a_link_to_the_last_checkpoint(tmp_path: Path):
    params = {"w": np.arange(4, dtype=np.float32)}
    fed = PipeFederation("j", tmp_path, ["site-1"], io.StringIO(), queue.Queue())
    fed.save_model("round-2", params)

    fed.save_model("final", params, saved_as="round-2")

    models = tmp_path / "models"
    assert (models / "final.safetensors").samefile(models / "round-2.safetensors")
    assert np.array_equal(tensors.read_file(models / "final.safetensors")["w"], params["w"])
