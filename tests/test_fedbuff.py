"""FedBuff (buffered asynchronous aggregation) against a plain numpy reference, with the sites' answers arriving in a
fixed, scripted order: staleness weights, max_staleness, model versions the server never made or no longer holds,
failed and unusable sites, the state restored on resume, and job.yml's arguments checked at submit."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.fedbuff import FedBuff, FedBuffArgs, staleness_weight

from .test_fedopt import EXAMPLES, TARGETS, X0
from .test_workflow_state import StatefulFederation


@dataclass
class Arrival:
    """The next answer: `site`'s, to its open task; `fail` instead of training; `meta`/`params` put in its answer."""

    site: str
    fail: str = ""
    meta: dict[str, object] = field(default_factory=dict)
    params: Callable[[Task], dict[str, np.ndarray]] | None = None


class ScriptedFederation(StatefulFederation):
    """An `AsyncFederation` whose sites answer in the order of `arrivals`: each the open task of its site, trained
    half way to the site's target (`test_fedopt`'s sites). No arrival left: nothing more comes (None)."""

    def __init__(self, arrivals: list[str | Arrival], sites: tuple[str, ...] = tuple(TARGETS)) -> None:
        super().__init__(dict.fromkeys(sites))  # type: ignore[arg-type]
        self.arrivals = [a if isinstance(a, Arrival) else Arrival(a) for a in arrivals]
        self.open: dict[str, tuple[str, Task]] = {}
        self.posts: list[tuple[str, int]] = []  # (site, model_version) of every task posted
        self.seq = 0

    def post(self, task: Task, site: str, timeout_s: float) -> str:
        self.seq += 1
        self.open[str(self.seq)] = (site, task)
        self.posts.append((site, task.meta["model_version"]))
        return str(self.seq)

    def next_answer(self, timeout_s: float) -> tuple[str, TaskResult | SiteFailure] | None:
        if not self.arrivals or not self.open:
            return None
        arrival = self.arrivals.pop(0)
        task_id = next(tid for tid, (site, _) in self.open.items() if site == arrival.site)
        site, task = self.open.pop(task_id)
        if arrival.fail:
            return task_id, SiteFailure(site, arrival.fail)
        w = task.params["w"]
        params = arrival.params(task) if arrival.params else {"w": w + 0.5 * (TARGETS[site] - w)}
        return task_id, TaskResult(site, params, EXAMPLES[site], {"loss": float(site[-1])}, dict(arrival.meta))


def fedbuff(updates: int, buffer_size: int, min_sites: int = 1, **args: object) -> FedBuff:
    return FedBuff(FedBuffArgs(updates=updates, buffer_size=buffer_size, **args), min_sites)  # type: ignore[arg-type]


def reference(arrivals: list[str], updates: int, k: int, lr: float = 1.0, weight: Callable[[int], float] = lambda s:
              1 / math.sqrt(1 + s), max_staleness: int | None = None, by_examples: bool = False) -> np.ndarray:
    """FedBuff's Algorithm 1 written out plainly: each site trains the newest model it was sent; every k updates
    x += lr * sum(c_i * weight(staleness_i) * delta_i)."""
    x, version = X0.copy(), 0
    sent = {site: (0, X0.copy()) for site in TARGETS}
    buffered: list[tuple[float, int, np.ndarray]] = []
    for site in arrivals:
        v, w = sent[site]
        y = w + 0.5 * (TARGETS[site] - w)
        if max_staleness is None or version - v <= max_staleness:
            buffered.append((weight(version - v), EXAMPLES[site], y - w))
        if len(buffered) == k:
            if by_examples:
                step = sum(s * n * d for s, n, d in buffered) / sum(n for _, n, _ in buffered)
            else:
                step = sum(s * d for s, _, d in buffered) / k
            x, version, buffered = x + lr * step, version + 1, []
        sent[site] = (version, x)
        if version == updates:
            break
    return x


ORDER = ["site-1", "site-2", "site-1", "site-1", "site-3", "site-2", "site-1", "site-1", "site-2", "site-1",
         "site-3", "site-1"]


def test_registered_as_fedbuff_and_an_async_federation_is_needed():
    """job.yml's `type: fedbuff`; its versions count as rounds; a federation without post/next_answer is refused."""
    # Prepare / Execute / Assert
    assert WORKFLOWS["fedbuff"] is FedBuff and FedBuff.needs_initial_model
    assert FedBuff.parse_args({"updates": 7, "buffer_size": 2}).rounds == 7  # type: ignore[attr-defined]
    with pytest.raises(WorkflowError, match="cannot hold a task open at each site"):
        fedbuff(2, 1).run(StatefulFederation({}), {"w": X0})


def test_staleness_weights_are_the_papers_functions():
    """polynomial (1+s)^-a (a = 0.5 by default), constant, hinge (1 up to b, then 1/(a(s-b)+1))."""
    # Prepare / Execute / Assert
    assert [staleness_weight("polynomial", s) for s in (0, 3, 8)] == [1.0, 0.5, 1 / 3]
    assert staleness_weight("polynomial", 3, exponent=1.0) == 0.25
    assert staleness_weight("constant", 50) == 1.0
    assert [staleness_weight("hinge", s, hinge_a=2, hinge_b=1) for s in (0, 1, 2, 4)] == [1.0, 1.0, 1 / 3, 1 / 7]


def test_the_model_is_exactly_the_references_with_answers_in_a_scripted_order():
    """Three sites answering out of step, K = 2, server_lr 0.8, 1/sqrt(1+s): each version as in the reference."""
    # Prepare
    fed = ScriptedFederation(ORDER)
    # Execute
    final = fedbuff(4, 2, server_lr=0.8).run(fed, {"w": X0.copy()})
    # Assert
    np.testing.assert_allclose(final["w"], reference(ORDER, 4, 2, lr=0.8), rtol=0, atol=1e-12)
    for version in range(1, 4):
        np.testing.assert_allclose(fed.models[f"round-{version - 1}"]["w"], reference(ORDER, version, 2, lr=0.8),
                                   rtol=0, atol=1e-12)
    assert list(fed.models) == ["round-0", "round-1", "round-2", "round-3", "final"]
    assert fed.posts[:3] == [("site-1", 0), ("site-2", 0), ("site-3", 0)]  # every site starts on version 0
    assert fed.posts[3] == ("site-1", 0) and fed.posts[4] == ("site-2", 1)  # the newest model after each answer
    assert fed.rounds[0] == {"site-1": {"loss": 1.0, "staleness": 0.0}, "site-2": {"loss": 2.0, "staleness": 0.0}}
    assert fed.rounds[1] == {"site-1": {"loss": 1.0, "staleness": 0.5}}  # site-1 twice: 1 and 0 versions old
    assert fed.rounds[2]["site-3"]["staleness"] == 2.0 and fed.rounds[2]["site-2"]["staleness"] == 1.0
    assert any(line.startswith("version 1 of 4: 2 updates from 2 sites (site-1, site-2)") for line in fed.lines)


def test_examples_weighting_and_the_hinge_function_match_the_reference():
    """weighting: examples (n_i / sum n) with hinge a=3, b=0, server_lr 1.5: the reference's model."""
    # Prepare
    fed = ScriptedFederation(ORDER)
    # Execute
    final = fedbuff(3, 3, server_lr=1.5, weighting="examples", staleness_function="hinge", hinge_a=3.0,
                    hinge_b=0).run(fed, {"w": X0.copy()})
    # Assert
    expected = reference(ORDER, 3, 3, lr=1.5, weight=lambda s: 1.0 if s == 0 else 1 / (3 * s + 1),
                         by_examples=True)
    np.testing.assert_allclose(final["w"], expected, rtol=0, atol=1e-12)


def test_a_site_that_stays_away_comes_back_down_weighted_or_refused_by_max_staleness():
    """site-3 answers its version-0 task only after 4 versions: weighted 1/sqrt(5) without a limit, refused (the
    reason in the log and the report) with max_staleness 2."""
    # Prepare
    order = ["site-1", "site-2"] * 4 + ["site-3", "site-1", "site-2", "site-1"]
    # Execute
    free = ScriptedFederation(order)
    down_weighted = fedbuff(5, 2).run(free, {"w": X0.copy()})
    capped = ScriptedFederation(order)
    refused = fedbuff(5, 2, max_staleness=2).run(capped, {"w": X0.copy()})
    # Assert
    np.testing.assert_allclose(down_weighted["w"], reference(order, 5, 2), rtol=0, atol=1e-12)
    assert free.rounds[4]["site-3"]["staleness"] == 4.0
    np.testing.assert_allclose(refused["w"], reference(order, 5, 2, max_staleness=2), rtol=0, atol=1e-12)
    assert "version 4: site-3's update refused: it trained version 0, 4 versions old (max_staleness 2)" in capped.lines
    report = capped.reports["fedbuff"]["sites"]["site-3"]  # type: ignore[index]
    assert report["refused"] == 1 and report["accepted"] == 0
    assert ("site-3", 4) in capped.posts  # refused, it gets the newest model


def test_an_update_from_a_version_the_server_never_made_or_no_longer_holds_is_refused_with_the_reason():
    """An answer whose meta names a version past the server's, or one whose model the server dropped (a full model
    cannot be told from its update), is refused; a diff from that version is taken, weighted by its staleness."""
    # Prepare
    def diff(task: Task) -> dict[str, np.ndarray]:
        return {"w": np.full(3, 0.25)}

    order: list[str | Arrival] = ["site-1", "site-1", "site-1", Arrival("site-2", meta={"model_version": 9}),
                                  Arrival("site-1", meta={"model_version": 1}),
                                  Arrival("site-2", meta={"model_version": 1, "params_type": "diff"}, params=diff),
                                  "site-1"]
    fed = ScriptedFederation(order, sites=("site-1", "site-2"))
    # Execute
    final = fedbuff(4, 1).run(fed, {"w": X0.copy()})
    # Assert
    assert "version 3: site-2's update refused: it trained model version 9, which the server never made (it is " \
           "at version 3)" in fed.lines
    assert any(line.startswith("version 3: site-1's update refused: it trained model version 1, which the server no "
                               "longer holds (it holds 3)") for line in fed.lines)
    x = X0.copy()
    for _ in range(3):
        x = x + 0.5 * (TARGETS["site-1"] - x)  # K = 1: site-1's first three answers, each from the newest model
    x = x + np.full(3, 0.25) / math.sqrt(1 + 2)  # site-2's diff from version 1, two versions old
    np.testing.assert_allclose(final["w"], x, rtol=0, atol=1e-12)


def test_a_failed_or_unusable_site_rests_until_the_next_version_and_too_few_fail_the_job():
    """A failure or a model of another shape rests the site (logged once); the next version wakes it; with fewer
    than min_sites training, the job fails naming why."""
    # Prepare
    wrong = Arrival("site-2", params=lambda task: {"w": np.zeros(5)})
    fed = ScriptedFederation(["site-1", Arrival("site-3", fail="disk full"), wrong, "site-1", "site-3", "site-2",
                              "site-1"])
    # Execute
    fedbuff(2, 2).run(fed, {"w": X0.copy()})
    short = ScriptedFederation([Arrival("site-1", fail="gone"), Arrival("site-2", fail="gone too")])
    with pytest.raises(WorkflowError, match="1 sites are training, 2 required; site-1: gone; site-2: gone too"):
        fedbuff(2, 1, min_sites=2).run(short, {"w": X0.copy()})
    # Assert
    assert "version 0: site-3 failed: disk full; it gets the newest model at the next version" in fed.lines
    assert any("site-2 failed: it sent an unusable model: site-2: tensor 'w' has shape (5,)" in line
               for line in fed.lines)
    assert ("site-3", 1) in fed.posts and ("site-2", 1) in fed.posts  # woken by version 1
    assert fed.reports["fedbuff"]["sites"]["site-3"]["failed"] == 1  # type: ignore[index]


def test_a_resumed_run_goes_on_from_its_checkpoint_and_state():
    """Resumed at version 2 from round-1's model and state: every site gets version 2 (the tasks open before the
    restart are gone), the versions go on as round-2, round-3, and the tally goes on from the saved one."""
    # Prepare
    first = ScriptedFederation(["site-1", "site-2", "site-3", "site-1"])
    fedbuff(2, 2).run(first, {"w": X0.copy()})
    fresh = ScriptedFederation(["site-1", "site-2", "site-3", "site-1"])
    expected = fedbuff(2, 2).run(fresh, first.models["round-1"])  # the same steps, counted from version 0
    # Execute
    resumed = fedbuff(4, 2)
    resumed.restore(first.states["round-1"])
    again = ScriptedFederation(["site-1", "site-2", "site-3", "site-1"])
    again.models["round-1"] = first.models["round-1"]  # the checkpoint resumed from, as on the server's disk
    final = resumed.run(again, first.models["round-1"], start_round=2)
    # Assert
    np.testing.assert_allclose(final["w"], expected["w"], rtol=0, atol=1e-12)
    assert again.posts[:3] == [("site-1", 2), ("site-2", 2), ("site-3", 2)]
    assert list(again.models) == ["round-1", "round-2", "round-3", "final"]
    assert again.reports["fedbuff"]["sites"]["site-1"]["accepted"] == 4  # type: ignore[index]
    with pytest.raises(WorkflowError, match="damaged"):
        fedbuff(2, 1).restore(type(first.states["round-1"])({"tally": ["x"]}))


@pytest.mark.parametrize(("args", "message"), [
    ("{updates: 0, buffer_size: 2}", "workflow.args.updates"),
    ("{updates: 3}", "workflow.args.buffer_size"),
    ("{updates: 3, buffer_size: 2, staleness_function: cubic}", "workflow.args.staleness_function"),
    ("{updates: 3, buffer_size: 2, hinge_a: 2}", "hinge_a is for staleness_function: hinge, not polynomial"),
    ("{updates: 3, buffer_size: 2, max_staleness: -1}", "workflow.args.max_staleness"),
    ("{updates: 3, buffer_size: 2, server_lr: 0}", "workflow.args.server_lr"),
])
def test_bad_arguments_are_refused_at_submit_naming_the_field(tmp_path: Path, args: str, message: str):
    """Each bad argument: the job is refused when loaded, naming job.yml's line and field."""
    # Prepare
    from flctl.node.jobs.job_spec import JobError, load_job

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "train.py").write_text("")
    (tmp_path / "app" / "model.py").write_text("")
    (tmp_path / "job.yml").write_text(f"api_version: 1\nname: fb\nworkflow: {{type: fedbuff, args: {args}}}\n"
                                      "app: {command: [python, train.py]}\ninitial_model: app/model.py:make\n")
    # Execute
    with pytest.raises(JobError) as caught:
        load_job(tmp_path)
    # Assert
    assert message in str(caught.value)
    assert "job.yml:3" in str(caught.value)


def test_a_fedbuff_job_without_an_initial_model_is_refused_when_loaded(tmp_path: Path):
    """Every answer is an update of the server's model: no initial_model, no job."""
    # Prepare
    from flctl.node.jobs.job_spec import JobError, load_job

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "train.py").write_text("")
    (tmp_path / "job.yml").write_text("api_version: 1\nname: fb\nworkflow: {type: fedbuff, args: {updates: 2, "
                                      "buffer_size: 1}}\napp: {command: [python, train.py]}\n")
    # Execute
    with pytest.raises(JobError) as caught:
        load_job(tmp_path)
    # Assert
    assert "fedbuff updates a model from the start: give the job an initial_model" in str(caught.value)


def test_the_recipe_api_has_a_fedbuff_job_that_needs_an_initial_model(tmp_path: Path):
    """FedBuffJob takes fedbuff's arguments, refuses to be built without initial_model, and exports a job that
    loads."""
    # Prepare
    from flctl.node.jobs.job_spec import load_job
    from flctl.recipe import FedBuffJob, RecipeInputError

    script = tmp_path / "app" / "train.py"
    script.parent.mkdir()
    script.write_text("")
    # Execute
    with pytest.raises(RecipeInputError, match="FedBuffJob: the fedbuff workflow updates a model from the start"):
        FedBuffJob(name="fb", script=script, updates=3, buffer_size=2)
    job = FedBuffJob(name="fb", script=script, updates=3, buffer_size=2, max_staleness=1,
                     initial_model={"w": np.zeros(3, np.float32)})
    job.export(tmp_path / "out")
    # Assert
    loaded = load_job(tmp_path / "out")
    assert loaded.spec.workflow.type == "fedbuff" and loaded.args.max_staleness == 1  # type: ignore[attr-defined]


def test_job_shows_table_of_the_fedbuff_report():
    """`flctl job show` turns the report into one row a site: accepted, refused, failed, staleness, last refusal."""
    # Prepare
    from flctl.console.cli.job.fedbuff_view import table

    fed = ScriptedFederation(["site-1", "site-2"] * 4 + ["site-3", "site-1", "site-2", "site-1"])
    fedbuff(5, 2, max_staleness=2).run(fed, {"w": X0.copy()})
    # Execute
    found = table({"fedbuff": fed.reports["fedbuff"]})
    # Assert
    assert found is not None and table({}) is None
    title, rows = found
    assert title == "fedbuff: model version 5 of 5, a step every 2 updates; each site's updates"
    assert rows[2] == ("site-3", 0, 1, 0, "0.00", 0,
                       "version 4: it trained version 0, 4 versions old (max_staleness 2)")
