"""Private set intersection: the `psi` workflow relaying real OpenMined ECDH PSI messages between sites' `PsiParty`s
(in memory here; over a real mTLS federation in test_psi_federation.py). Every result is compared with Python's
own set intersection; bad input drops one site with a reason and leaves the others' result exact."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("private_set_intersection.python", reason="needs the privacy extra: bash scripts/setup.sh --all")

from flctl.node.client.psi import RESULT_FILE, PsiError, PsiParty, check_ids
from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.psi import Psi, PsiArgs

from .test_fedavg import FakeFederation, Site

Tamper = Callable[[Task, TaskResult], TaskResult]


def party(name: str, ids: Callable[[], Iterable[Any]], workspace: Path, tamper: Tamper | None = None) -> Site:
    """A site whose answers are its real `PsiParty`'s (as `fl.psi` gives them), optionally changed by `tamper`."""
    own = PsiParty(ids, workspace / name)

    def answer(task: Task) -> TaskResult | SiteFailure:
        try:
            params, meta = own.answer(task.kind.value, task.params, task.meta)
        except PsiError as exc:
            return SiteFailure(name, str(exc))
        result = TaskResult(name, params, 0, {}, meta)
        return tamper(task, result) if tamper else result

    return answer


def federation(tmp_path: Path, sets: dict[str, list[Any]], **tampered: Tamper) -> FakeFederation:
    return FakeFederation({name: party(name, lambda ids=ids: ids, tmp_path, tampered.get(name.replace("-", "_")))
                           for name, ids in sets.items()})


def written(tmp_path: Path, site: str) -> list[str]:
    return (tmp_path / site / RESULT_FILE).read_text().splitlines()


def expected(*sets: Iterable[Any]) -> list[str]:
    common = set.intersection(*({str(item) for item in ids} for ids in sets))
    return sorted(common)


SETS = {
    "site-1": [f"c{i:04d}" for i in range(0, 600)] + ["c0001", "c0002"],  # duplicates count once
    "site-2": [f"c{i:04d}" for i in range(300, 900)],
    "site-3": [f"c{i:04d}" for i in range(0, 1000, 2)] + ["c0400", "x-only-here"],
}


def test_three_sites_learn_exactly_the_intersection_of_all(tmp_path: Path):
    """Known overlaps with duplicates: every site writes the exact intersection; the server saw sizes only."""
    # Prepare
    fed = federation(tmp_path, SETS)
    # Execute
    result = Psi(PsiArgs()).run(fed, None)
    # Assert
    want = expected(*SETS.values())
    assert len(want) == 150
    for site in SETS:
        assert written(tmp_path, site) == want
    assert result == {}
    assert fed.reports["psi"] == {"sites": list(SETS), "intersection_size": 150, "dropped": {},
                                  "set_sizes": {"site-1": 600, "site-2": 600, "site-3": 501},
                                  "written_by": list(SETS)}
    assert fed.rounds[0] == {site: {"intersection_size": 150.0} for site in SETS}
    assert WORKFLOWS["psi"] is Psi
    seen = " ".join(fed.lines) + repr(fed.reports) + repr([task.meta for task, _, _ in fed.tasks])
    assert "c0" not in seen and "x-only" not in seen


def test_what_the_server_relays_is_opaque(tmp_path: Path):
    """No relayed message holds an ID's bytes, and each PSI message goes to one site alone."""
    # Prepare
    fed = federation(tmp_path, SETS)
    # Execute
    Psi(PsiArgs()).run(fed, None)
    # Assert
    relayed = b"".join(value.tobytes() for task, _, _ in fed.tasks for value in task.params.values())
    assert len(relayed) > 10_000
    every = {item.encode() for ids in SETS.values() for item in ids}
    assert [item for item in every if item in relayed] == []  # (random bytes hold a given 5-byte ID ~1e-7 of runs)
    assert all(len(sites) == 1 for task, sites, _ in fed.tasks if task.kind != "psi_items" and task.params)


def test_an_empty_intersection_is_exact_and_written(tmp_path: Path):
    """Disjoint sets: each site writes an empty intersection; integers work as IDs."""
    # Prepare
    sets: dict[str, list[Any]] = {"site-1": [1, 2, 3], "site-2": [3, 4, 5], "site-3": [5, 6, 1]}
    fed = federation(tmp_path, sets)
    # Execute
    Psi(PsiArgs()).run(fed, None)
    # Assert
    for site in sets:
        assert written(tmp_path, site) == []
    assert fed.reports["psi"]["intersection_size"] == 0


def test_the_order_decides_the_chain(tmp_path: Path):
    """`order` puts site-3 first; the result is the same."""
    # Prepare
    fed = federation(tmp_path, SETS)
    # Execute
    Psi(PsiArgs(order=["site-3", "site-1", "site-2"])).run(fed, None)
    # Assert
    first = next(sites for task, sites, _ in fed.tasks if task.kind == "psi_request")
    assert first == ["site-1"]  # site-1 is the first PSI client, against site-3
    assert fed.reports["psi"]["sites"] == ["site-3", "site-1", "site-2"]
    assert written(tmp_path, "site-2") == expected(*SETS.values())


@pytest.mark.parametrize(("bad", "reason"), [
    ([], "this site's ID list is empty"),
    (["a", 2], "ID number 2 is a int where the IDs before it are str"),
    ([1.5], "ID number 1 is a float"),
])
def test_a_site_with_unusable_ids_is_left_out_with_the_reason(tmp_path: Path, bad: list[Any], reason: str):
    """An empty list or mixed types: that site fails with the reason, the others' result is exact."""
    # Prepare
    fed = federation(tmp_path, {**SETS, "site-3": bad})
    # Execute
    Psi(PsiArgs()).run(fed, None)
    # Assert
    assert reason in fed.reports["psi"]["dropped"]["site-3"]
    assert written(tmp_path, "site-1") == written(tmp_path, "site-2") == expected(SETS["site-1"], SETS["site-2"])
    assert not (tmp_path / "site-3" / RESULT_FILE).exists()


def test_a_site_whose_id_type_differs_from_the_others_is_left_out(tmp_path: Path):
    """Two sites of str IDs, one of int: the int site fails, naming both types; two sites of different types
    cannot go on."""
    # Prepare
    fed = federation(tmp_path, {**SETS, "site-2": list(range(300, 900))})
    pair = federation(tmp_path / "pair", {"site-1": ["1"], "site-2": [1]})
    # Execute
    Psi(PsiArgs()).run(fed, None)
    # Assert
    assert fed.reports["psi"]["dropped"] == {"site-2": "its IDs are int where the other sites' are str"}
    assert written(tmp_path, "site-3") == expected(SETS["site-1"], SETS["site-3"])
    with pytest.raises(WorkflowError, match=r"different types \(site-1 str, site-2 int\)"):
        Psi(PsiArgs()).run(pair, None)


def garbage(kind: str) -> Tamper:
    """Answers of `kind` carry bytes that are no PSI message."""
    def tamper(task: Task, result: TaskResult) -> TaskResult:
        if task.kind == kind:
            result.params = {name: np.frombuffer(b"not a PSI message", np.uint8) for name in result.params}
        return result

    return tamper


@pytest.mark.parametrize(("liar", "kind"), [("site_3", "psi_request"), ("site_1", "psi_response"),
                                            ("site_2", "psi_response")])
def test_a_site_sending_a_malformed_message_is_left_out_and_the_others_start_over(tmp_path: Path, liar: str,
                                                                                  kind: str):
    """A malformed request or response: its peer says so, the sender is dropped and told, the chain starts over
    without it, and the others' intersection is exactly theirs."""
    # Prepare
    fed = federation(tmp_path, SETS, **{liar: garbage(kind)})
    name = liar.replace("_", "-")
    others = [ids for site, ids in SETS.items() if site != name]
    # Execute
    Psi(PsiArgs()).run(fed, None)
    # Assert
    dropped = fed.reports["psi"]["dropped"]
    assert list(dropped) == [name]
    assert "could not use its message: the PSI" in dropped[name]
    assert f"psi: starting over without {name} (2 sites)" in fed.lines
    for site in SETS:
        if site != name:
            assert written(tmp_path, site) == expected(*others)
    assert not (tmp_path / name / RESULT_FILE).exists()


def test_a_response_that_drops_elements_is_refused(tmp_path: Path):
    """A well-formed response with fewer elements than the request: refused, never an empty intersection."""
    # Prepare
    from flctl.node.client import psi as site_psi

    def short(task: Task, result: TaskResult) -> TaskResult:
        if task.kind == "psi_response":
            import private_set_intersection.python as lib

            response = lib.Response()
            response.ParseFromString(result.params[site_psi.RESPONSE].tobytes())
            del response.encrypted_elements[0]
            result.params[site_psi.RESPONSE] = np.frombuffer(response.SerializeToString(), np.uint8)
        return result

    fed = federation(tmp_path, SETS, site_1=short)
    # Execute
    Psi(PsiArgs()).run(fed, None)
    # Assert
    assert "elements for a request of" in fed.reports["psi"]["dropped"]["site-1"]
    assert written(tmp_path, "site-3") == expected(SETS["site-2"], SETS["site-3"])


def test_too_few_sites_left_fail_the_job(tmp_path: Path):
    """Two sites, one with an empty list: the job fails, naming the reason."""
    # Prepare
    fed = federation(tmp_path, {"site-1": ["a"], "site-2": []})
    # Execute / Assert
    with pytest.raises(WorkflowError, match=r"psi needs 2 sites but 1 can take part \(site-2: this site's ID list"):
        Psi(PsiArgs()).run(fed, None)


def test_check_ids_gives_distinct_sorted_strings_and_the_type():
    """Duplicates count once; ints (numpy's too) become their decimal strings; a lone string is refused."""
    # Prepare / Execute / Assert
    assert check_ids(["b", "a", "b"]) == (["a", "b"], "str")
    assert check_ids([np.int64(10), 2, 10]) == (["10", "2"], "int")
    with pytest.raises(PsiError, match="one string"):
        check_ids("abc")
    with pytest.raises(PsiError, match="ID number 1 is a bool"):
        check_ids([True])


def test_the_site_keeps_a_psi_jobs_result_for_the_jobs_that_name_it(tmp_path: Path):
    """keep copies a psi job's file to the site's psi/<name>/ (never through a link); hand_over gives it to a job
    naming psi_job, and says why not when the site has none."""
    # Prepare
    from flctl.node.jobs.job_spec import JobSpec
    from flctl.node.site import psi_results

    site, job, later = tmp_path / "site", tmp_path / "job", tmp_path / "later"
    spec = JobSpec.model_validate({"api_version": 1, "name": "ids", "workflow": {"type": "psi"}})
    follow = JobSpec.model_validate({"api_version": 1, "name": "v", "workflow": {"type": "fedavg", "args": {
        "rounds": 1}}, "psi_job": "ids"})
    (job / "psi").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("not the site's to keep\n")
    (job / RESULT_FILE).symlink_to(secret)
    # Execute
    linked = psi_results.keep(site, job, spec)
    refused = psi_results.hand_over(site, later, follow)
    (job / RESULT_FILE).unlink()
    (job / RESULT_FILE).write_text("a\nb\n")
    kept = psi_results.keep(site, job, spec)
    given = psi_results.hand_over(site, later, follow)
    # Assert
    assert linked is None and "no intersection from a psi job named 'ids'" in refused
    assert kept == site / "psi" / "ids" / "intersection.txt" and kept.read_text() == "a\nb\n"
    assert given == "" and (later / RESULT_FILE).read_text() == "a\nb\n"
    assert psi_results.hand_over(site, later, spec) == ""  # a job naming no psi_job gets nothing


def test_a_sites_privacy_filters_pass_psi_messages_unchanged():
    """A site whose scope noises every update (gaussian_dp) still sends its PSI messages byte for byte: they are
    not a model (tasks.OPAQUE_KINDS), and noise would only break them."""
    # Prepare
    from flctl.node.client import api_wire as wire
    from flctl.node.config.privacy import FilterEntry, PrivacyRules
    from flctl.node.jobs.tasks import TaskKind
    from flctl.node.wire import tensors

    entry = FilterEntry(filter="gaussian_dp", args={"clip_norm": 1.0, "noise_multiplier": 1.0})
    filters = PrivacyRules(scopes={"public": [], "dp": [entry]}).pipeline("job-1", "dp")
    message = tensors.encode({"psi_request": np.frombuffer(b"opaque bytes of a PSI request", np.uint8)})
    task = Task(TaskKind.PSI_REQUEST, 0, {}, {"set": "own"})
    # Execute
    _, given = filters.task_in(task, tensors.encode({}), "site-1")
    _, out = filters.result_out(task, wire.Result(1, 0), message, "site-1")
    # Assert
    assert bytes(out) == message and bytes(given) == tensors.encode({})
