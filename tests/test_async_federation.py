"""The server job process's asynchronous tasks (`AsyncFederation`, FedBuff's primitive): `post` sends a task to one
site and returns at once, `next_answer` gives the next answer to any posted task as it arrives; failures, timeouts,
rejoins, and answers that arrive while `send` waits. The daemon's end of the pipe is played by the test."""

from __future__ import annotations

import base64
import io
import queue
from pathlib import Path

import numpy as np
import pytest

from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.server.job_messages import (
    JOB_REQUESTS,
    AbortJob,
    CancelTask,
    JobAnswer,
    JobRequest,
    PostTask,
    SiteFailed,
    SiteRejoined,
    SiteResult,
)
from flctl.node.server.job_process import Aborted, PipeFederation
from flctl.node.wire import tensors


class Requests(io.StringIO):
    """The daemon's end of the pipe: every request the job process wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[JobRequest] = []

    def write(self, text: str) -> int:
        self.sent.append(JOB_REQUESTS.decode(text))
        return len(text)

    def posts(self) -> list[PostTask]:
        return [m for m in self.sent if isinstance(m, PostTask)]


def setup(tmp_path: Path) -> tuple[PipeFederation, Requests, queue.Queue[JobAnswer]]:
    requests, inbox = Requests(), queue.Queue[JobAnswer]()
    return PipeFederation("j", tmp_path, ["site-1", "site-2"], requests, inbox), requests, inbox


def result(task_id: str, site: str, value: float) -> SiteResult:
    data = base64.b64encode(tensors.encode({"w": np.full(2, value, np.float32)})).decode("ascii")
    return SiteResult(task_id=task_id, site=site, data=data, num_examples=3, metrics={"loss": value})


def train(version: int) -> Task:
    return Task("train", version, {"w": np.zeros(2, np.float32)}, meta={"model_version": version})


def test_posted_tasks_are_answered_in_the_order_the_answers_arrive(tmp_path: Path):
    """Two posts, one PostTask each for its site alone; site-2 answers first and comes first, with its task id."""
    # Prepare
    fed, requests, inbox = setup(tmp_path)
    first, second = fed.post(train(0), "site-1", 60), fed.post(train(0), "site-2", 60)
    # Execute
    inbox.put(result(second, "site-2", 2.0))
    inbox.put(result(first, "site-1", 1.0))
    answers = [fed.next_answer(5), fed.next_answer(5), fed.next_answer(0.1)]
    # Assert
    assert [(p.task_id, p.sites) for p in requests.posts()] == [(first, ["site-1"]), (second, ["site-2"])]
    assert [a[0] for a in answers[:2] if a] == [second, first]
    got = answers[0][1] if answers[0] else None
    assert isinstance(got, TaskResult) and got.site == "site-2" and got.metrics == {"loss": 2.0}
    np.testing.assert_array_equal(got.params["w"], np.full(2, 2.0, np.float32))
    assert answers[2] is None  # nothing posted is open
    assert not list((tmp_path / "tasks").iterdir())  # each answered task's file is gone


def test_a_silent_site_times_out_and_its_task_is_withdrawn(tmp_path: Path):
    """A post with timeout_s 0.2 and no answer: a SiteFailure saying so, and a CancelTask for that site."""
    # Prepare
    fed, requests, _ = setup(tmp_path)
    task_id = fed.post(train(0), "site-1", 0.2)
    # Execute
    got = fed.next_answer(5)
    # Assert
    assert got == (task_id, SiteFailure("site-1", "no answer within 0.2 s"))
    assert CancelTask(task_id=task_id, sites=["site-1"]) in requests.sent


def test_a_failed_site_fails_its_task_is_not_sent_more_and_gets_tasks_again_once_it_rejoined(tmp_path: Path):
    """SiteFailed fails the open task; a post while the site is down sends nothing and fails at once; after
    SiteRejoined a post reaches it again."""
    # Prepare
    fed, requests, inbox = setup(tmp_path)
    task_id = fed.post(train(0), "site-1", 60)
    inbox.put(SiteFailed(site="site-1", reason="its job process exited"))
    # Execute
    failed = fed.next_answer(5)
    again = fed.post(train(1), "site-1", 60)
    refused = fed.next_answer(5)
    inbox.put(SiteRejoined(site="site-1"))
    back = fed.post(train(1), "site-1", 60)
    # Assert
    assert failed == (task_id, SiteFailure("site-1", "its job process exited"))
    assert refused == (again, SiteFailure("site-1", "its job process exited"))
    assert [p.task_id for p in requests.posts()] == [task_id, back]


def test_an_answer_to_a_posted_task_that_arrives_while_send_waits_is_kept_for_next_answer(tmp_path: Path):
    """`send` to site-2 (silent, 0.5 s) reads site-1's answer to a posted task meanwhile: it keeps it, and
    next_answer returns it."""
    # Prepare
    fed, _, inbox = setup(tmp_path)
    posted = fed.post(train(0), "site-1", 60)
    inbox.put(result(posted, "site-1", 1.0))
    # Execute
    during_send = list(fed.send(Task("evaluate", 0, {"w": np.zeros(2, np.float32)}), ["site-2"], 0.5))
    kept = fed.next_answer(5)
    # Assert
    assert during_send == []
    assert kept is not None and kept[0] == posted and isinstance(kept[1], TaskResult) and kept[1].site == "site-1"


def test_an_abort_while_waiting_for_answers_stops_the_job(tmp_path: Path):
    """AbortJob reaches next_answer as Aborted, as it reaches send."""
    # Prepare
    fed, _, inbox = setup(tmp_path)
    fed.post(train(0), "site-1", 60)
    inbox.put(AbortJob(reason="stopped by admin@hub.org"))
    # Execute / Assert
    with pytest.raises(Aborted, match="stopped by admin"):
        fed.next_answer(5)
