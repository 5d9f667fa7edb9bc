"""A job file: `NAME.yml` with `app/` beside it is a job, so several jobs share one app folder."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from flctl.node.errors import JobError
from flctl.node.jobs.bundle import extract_bundle, pack_job
from flctl.node.jobs.job_spec import load_job

JOB = """api_version: 1
name: {name}
workflow: {{type: fedavg, args: {{rounds: 1}}}}
app: {{command: [python, train.py]}}
"""


def shared_app(tmp_path: Path) -> Path:
    """A folder with app/train.py, two job files and a data file beside them."""
    folder = tmp_path / "shared"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "train.py").write_text("print('hi')\n")
    (folder / "one.yml").write_text(JOB.format(name="one"))
    (folder / "two.yml").write_text(JOB.format(name="two"))
    (folder / "notes.txt").write_text("not part of a job file's bundle\n")
    return folder


def test_a_job_file_loads_with_the_app_beside_it(tmp_path):
    """load_job takes a job file: its spec, the folder its app/ is in, and the file itself."""
    # Prepare
    folder = shared_app(tmp_path)
    # Execute
    loaded = load_job(folder / "two.yml")
    # Assert
    assert loaded.spec.name == "two"
    assert loaded.folder == folder
    assert loaded.job_file == folder / "two.yml" and loaded.spec_path == folder / "two.yml"
    assert load_job(folder / "one.yml").spec.name == "one"


def test_a_job_file_packs_as_job_yml_and_its_app_only(tmp_path):
    """The bundle of a job file holds that file as job.yml and the app/ beside it, nothing else; unpacked, it is
    a job folder that load_job reads as the same job."""
    # Prepare
    folder = shared_app(tmp_path)
    # Execute
    data = pack_job(folder / "two.yml")
    extract_bundle(data, tmp_path / "unpacked")
    # Assert
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == ["app/train.py", "job.yml"]
    assert (tmp_path / "unpacked" / "job.yml").read_bytes() == (folder / "two.yml").read_bytes()
    assert load_job(tmp_path / "unpacked").spec.name == "two"
    assert pack_job(folder / "two.yml") == data  # deterministic, as a folder's bundle is


def test_a_path_to_job_yml_stands_for_its_whole_folder(tmp_path):
    """Given a folder's job.yml, the job is the folder: everything in it is packed, as when the folder is given."""
    # Prepare
    folder = tmp_path / "job"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "train.py").write_text("print('hi')\n")
    (folder / "job.yml").write_text(JOB.format(name="job"))
    (folder / "model.safetensors").write_bytes(b"x")
    # Execute
    loaded = load_job(folder / "job.yml")
    # Assert
    assert loaded.job_file is None and loaded.folder == folder
    assert pack_job(folder / "job.yml") == pack_job(folder)


def test_a_job_file_without_an_app_folder_is_refused_naming_the_file(tmp_path):
    """No app/ beside the job file: one problem naming the file and where app/ belongs."""
    # Prepare
    (tmp_path / "lonely.yml").write_text(JOB.format(name="lonely"))
    # Execute
    with pytest.raises(JobError) as caught:
        load_job(tmp_path / "lonely.yml")
    with pytest.raises(JobError) as packing:
        pack_job(tmp_path / "lonely.yml")
    # Assert
    assert "lonely.yml" in str(caught.value) and "no app/ folder beside lonely.yml" in str(caught.value)
    assert "has no app/ folder beside it" in str(packing.value)


def test_a_missing_job_names_both_forms(tmp_path):
    """A path that is neither a folder nor a file says what a job is."""
    # Prepare / Execute
    with pytest.raises(JobError) as caught:
        load_job(tmp_path / "nothing")
    # Assert
    assert "a job file (NAME.yml) with app/ beside it" in str(caught.value)
