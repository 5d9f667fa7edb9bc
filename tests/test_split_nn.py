"""Split learning (`split_nn`): two sites with different columns of the same rows train one model through the
server's relay; its accuracy matches the same model trained centrally on the joined table. In memory with the
sites' real `SplitParty`s, then end to end on a real mTLS federation: the example's psi job, then its split job."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch: bash scripts/setup.sh --all")

from flctl.node.client.split_nn import SplitError, SplitParty  # noqa: E402
from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult  # noqa: E402
from flctl.node.workflows import WORKFLOWS  # noqa: E402
from flctl.node.workflows.base import WorkflowError  # noqa: E402
from flctl.node.workflows.split_nn import SplitNN, SplitNNArgs, batches, split_rows  # noqa: E402

from .test_fedavg import FakeFederation, Site  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "playbooks" / "jobs" / "vertical"
ACCURACY_TOLERANCE = 0.01
"""Split and central training do the same arithmetic in the same order; one point of accuracy allows for float
rounding (in practice they agree to 1e-6)."""


@pytest.fixture(scope="module")
def example() -> Iterator[tuple[Any, Any]]:
    """The example's data and model modules, imported from its app folder."""
    sys.path.insert(0, str(EXAMPLE / "app"))
    try:
        import split_model
        import vertical_data

        yield vertical_data, split_model
    finally:
        sys.path.remove(str(EXAMPLE / "app"))


def shared_ids(data: Any) -> list[str]:
    return sorted(set(data.site_table("site-1")["customer_id"]) & set(data.site_table("site-2")["customer_id"]))


def party_site(name: str, data: Any, model: Any) -> Site:
    """A site answering as its `fl.split_nn` would, with the example's models over its aligned columns."""
    x, y = data.aligned(name, shared_ids(data))
    bottom = model.bottom(x.shape[1], model.bottom_seed(name))
    if y is None:
        own = SplitParty(bottom, torch.from_numpy(x), model.optimizer(bottom))
    else:
        top = model.top(parties=2)
        own = SplitParty(bottom, torch.from_numpy(x), model.optimizer(bottom, top), top=top,
                         labels=torch.from_numpy(y), loss_fn=torch.nn.BCEWithLogitsLoss())

    def answer(task: Task) -> TaskResult | SiteFailure:
        params, metrics, meta = own.answer(task.kind.value, task.params, task.meta)
        return TaskResult(name, params, len(task.meta.get("rows", [])), metrics, meta)

    return answer


def central(data: Any, model: Any, args: SplitNNArgs) -> list[tuple[float, float]]:
    """The same model trained on the joined table in one process, with the same batches: each epoch's test
    (loss, accuracy)."""
    from flctl.node.client.split_nn import accuracy

    ids = shared_ids(data)
    (x1, y), (x2, _) = data.aligned("site-1", ids), data.aligned("site-2", ids)
    x1, x2, y = torch.from_numpy(x1), torch.from_numpy(x2), torch.from_numpy(y)
    b1, b2, top = model.bottom(4, model.bottom_seed("site-1")), model.bottom(4, model.bottom_seed("site-2")), \
        model.top(parties=2)
    optimizer, loss_fn = model.optimizer(b1, b2, top), torch.nn.BCEWithLogitsLoss()
    train, test = split_rows(len(ids), args.test_fraction, args.seed)
    history = []
    for epoch in range(args.epochs):
        for rows in batches(train, args.batch_size, args.seed, epoch):
            optimizer.zero_grad()
            loss_fn(top(torch.cat([b1(x1[rows]), b2(x2[rows])], dim=1)), y[rows]).backward()
            optimizer.step()
        with torch.no_grad():
            logits = top(torch.cat([b1(x1[test]), b2(x2[test])], dim=1))
            history.append((float(loss_fn(logits, y[test])), accuracy(logits, y[test])))
    return history


ARGS = SplitNNArgs(label_site="site-1", epochs=3, batch_size=64)


def test_split_learning_matches_the_central_model_on_the_joined_table(example: tuple[Any, Any]):
    """Bank (labels, top) and insurer: every epoch's test loss and accuracy are the central model's."""
    # Prepare
    data, model = example
    fed = FakeFederation({site: party_site(site, data, model) for site in ("site-1", "site-2")})
    # Execute
    result = SplitNN(ARGS).run(fed, None)
    want = central(data, model, ARGS)
    # Assert
    report = fed.reports["split_nn"]
    assert result == {} and WORKFLOWS["split_nn"] is SplitNN
    assert report["rows"] == len(shared_ids(data)) == 1028
    assert (report["train_rows"], report["test_rows"]) == (822, 206)
    got = [(epoch["test_loss"], epoch["test_accuracy"]) for epoch in report["epochs"]]
    for (loss, acc), (want_loss, want_acc) in zip(got, want, strict=True):
        assert abs(acc - want_acc) <= ACCURACY_TOLERANCE
        assert loss == pytest.approx(want_loss, abs=1e-4)
    assert want[-1][1] > 0.7, want  # well above chance (0.5)
    assert set(fed.rounds) == {0, 1, 2} and set(fed.rounds[2]["site-1"]) == {"train_loss", "test_loss",
                                                                               "test_accuracy"}


def test_only_activations_and_gradients_travel(example: tuple[Any, Any]):
    """What the server relays per batch: the insurer's activations to the bank, the bank's gradient back, rows by
    number; never a feature column or a label."""
    # Prepare
    data, model = example
    fed = FakeFederation({site: party_site(site, data, model) for site in ("site-1", "site-2")})
    # Execute
    SplitNN(SplitNNArgs(label_site="site-1", epochs=1)).run(fed, None)
    # Assert
    sent = {(task.kind.value, sites[0], tuple(sorted(task.params))) for task, sites, _ in fed.tasks}
    assert sent == {("split_step", "site-1", ()), ("split_forward", "site-2", ()),
                    ("split_step", "site-1", ("site-2",)), ("split_forward", "site-2", ("gradient",))}
    shapes = {task.params["site-2"].shape[1] for task, _, _ in fed.tasks if "site-2" in task.params}
    assert shapes == {model.HIDDEN}


def test_the_rows_and_batches_are_seeded_and_cover_the_training_rows():
    """A seeded test split; each epoch's batches cover the training rows once, in an order of the epoch's own."""
    # Prepare / Execute
    train, test = split_rows(10, 0.2, 3)
    epoch0, epoch1 = batches(train, 3, 3, 0), batches(train, 3, 3, 1)
    # Assert
    assert len(test) == 2 and sorted(train + test) == list(range(10))
    assert split_rows(10, 0.2, 3) == (train, test)
    assert sorted(row for batch in epoch0 for row in batch) == train and [len(b) for b in epoch0] == [3, 3, 2]
    assert epoch0 != epoch1


def test_sites_with_different_rows_or_a_missing_label_site_fail_the_job(example: tuple[Any, Any]):
    """Sites that do not hold the same rows, or a label site not in the job: the job fails saying so."""
    # Prepare
    data, model = example

    def rows(n: int) -> Site:
        return lambda task: TaskResult("site-2", {}, 0, {}, {"rows": n})

    fed = FakeFederation({"site-1": party_site("site-1", data, model), "site-2": rows(5)})
    # Execute / Assert
    with pytest.raises(WorkflowError, match=r"must hold the same rows .* site-1 1028, site-2 5; run them over one"):
        SplitNN(ARGS).run(fed, None)
    with pytest.raises(WorkflowError, match=r"label site 'bank' .* is not among the job's sites"):
        SplitNN(SplitNNArgs(label_site="bank", epochs=1)).run(fed, None)


def test_a_feature_site_refuses_a_gradient_of_the_wrong_shape():
    """The feature site checks what it is asked to apply."""
    # Prepare
    bottom = torch.nn.Linear(2, 3)
    own = SplitParty(bottom, torch.zeros(4, 2), torch.optim.SGD(bottom.parameters(), lr=0.1))
    own.answer("split_forward", {}, {"phase": "train", "rows": [0, 1]})
    # Execute / Assert
    with pytest.raises(SplitError, match=r"gradient has shape \(2, 2\), the activations \(2, 3\)"):
        own.answer("split_forward", {"gradient": np.zeros((2, 2), np.float32)}, {"phase": "train", "rows": [2]})
    with pytest.raises(SplitError, match="rows must be indices below 4"):
        own.answer("split_forward", {}, {"phase": "eval", "rows": [4]})


def test_the_vertical_example_runs_on_a_federation_and_matches_the_central_model(tmp_path: Path,
                                                                                example: tuple[Any, Any]):
    """playbooks/jobs/vertical on a real mTLS federation: psi.yml finds the 1028 shared customers, split.yml trains
    over them (each site reading the intersection it kept); its test accuracy is the central model's."""
    pytest.importorskip("private_set_intersection.python", reason="needs the privacy extra: bash scripts/setup.sh "
                                                                  "--all")
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.jobs.job_status import JobStatus

    from .federation import make_federation, running
    from .test_psi_federation import wait_kept

    # Prepare
    data, model = example
    with running(make_federation(tmp_path, sites=2)) as fed, AdminClient.from_kit(fed.admin_kit) as admin:
        # Execute
        psi_id = admin.submit_job(EXAMPLE / "psi.yml")
        list(admin.watch(psi_id))
        found = admin.get_job(psi_id)
        wait_kept(fed, "vertical-psi", fed.sites)
        split_id = admin.submit_job(EXAMPLE / "split.yml")
        list(admin.watch(split_id))
        trained = admin.get_job(split_id)
    # Assert
    assert found.status == JobStatus.FINISHED, found.error + fed.logs()
    assert found.reports["psi"]["intersection_size"] == 1028
    assert trained.status == JobStatus.FINISHED, trained.error + fed.logs()
    epochs = trained.reports["split_nn"]["epochs"]
    args = SplitNNArgs(label_site="site-1", epochs=5, batch_size=64, test_fraction=0.2, seed=0)
    want = central(data, model, args)
    assert len(epochs) == 5
    assert abs(epochs[-1]["test_accuracy"] - want[-1][1]) <= ACCURACY_TOLERANCE
    assert epochs[-1]["test_accuracy"] > 0.9, epochs
