"""`flctl job templates` and `flctl job create --template NAME DIR`: a ready job folder from every example job."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.console.cli.quickstart import examples
from flctl.node.jobs.job_spec import load_job

from .conftest import run_flctl


def test_templates_lists_every_example_job() -> None:
    """One row per example job, with its workflow and what it does."""
    listed = run_flctl("job", "templates", "--json").json()
    assert [row["name"] for row in listed] == list(examples())
    by_name = {row["name"]: row for row in listed}
    assert by_name["noniid/cyclic.yml"]["workflow"] == "cyclic"
    assert by_name["hello-numpy"]["about"].startswith("The smallest job")


@pytest.mark.parametrize("name", list(examples()))
def test_create_writes_a_job_folder_that_submit_accepts(tmp_path: Path, name: str) -> None:
    """Each template becomes a folder of its own (job.yml, app/) that load_job, flctl job submit's check, accepts."""
    result = run_flctl("job", "create", "--template", name, tmp_path / "job", "--json")
    assert result.code == 0, result.stderr
    loaded = load_job(tmp_path / "job")
    assert result.json() == {"template": name, "path": str(tmp_path / "job"), "name": loaded.spec.name,
                             "workflow": loaded.spec.workflow.type}
    assert not list((tmp_path / "job").rglob("__pycache__"))


def test_create_names_the_job(tmp_path: Path) -> None:
    """--name replaces the template's job name; a bad one is refused (exit 2) and nothing is written."""
    assert run_flctl("job", "create", "-t", "noniid/fedavg", tmp_path / "mine", "--name", "my-run").code == 0
    assert load_job(tmp_path / "mine").spec.name == "my-run"
    refused = run_flctl("job", "create", "-t", "hello-numpy", tmp_path / "bad", "--name", "a b")
    assert refused.code == 2
    assert "--name: 'a b' is not a valid job name" in refused.stderr
    assert not (tmp_path / "bad").exists()


def test_create_refuses_an_unknown_template_and_a_folder_in_use(tmp_path: Path) -> None:
    """Exit 2 with the templates listed; a folder that is not empty is left as it was."""
    unknown = run_flctl("job", "create", "-t", "hello-tf", tmp_path / "x")
    assert unknown.code == 2
    assert "no template 'hello-tf'; `flctl job templates` lists them: " in unknown.stderr
    assert "hello-numpy, " in unknown.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    used = run_flctl("job", "create", "-t", "hello-numpy", tmp_path / "used")
    assert used.code == 2
    assert "exists and is not an empty folder" in used.stderr
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]
