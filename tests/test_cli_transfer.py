"""Moving jobs in and out from the command line against a real federation: packing a large job, downloading
with a progress display, and a job id checked before anything is made."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from flctl.console.cli import terminal

from .conftest import ROOT, run_flctl
from .federation import Federation, make_federation, running

ZEROS = 100 * 1024 * 1024  # a zero-filled data file deflates ~1000:1, past the ratio that once called it a bomb


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running(make_federation(tmp_path_factory.mktemp("fed"), sites=1)) as federation:
        yield federation


@pytest.fixture
def as_admin(fed: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLCTL_KIT", str(fed.admin_kit))


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stderr as a terminal (rich is told so), captured."""
    captured = io.StringIO()
    monkeypatch.setattr(terminal, "err", Console(file=captured, force_terminal=True, width=120), raising=False)
    return captured


def big_job(tmp_path: Path) -> Path:
    """hello-numpy for one site and one round, carrying a sparse zero-filled file of ZEROS bytes."""
    job = tmp_path / "big-job"
    shutil.copytree(ROOT / "playbooks" / "jobs" / "hello-numpy", job)
    spec = job / "job.yml"
    spec.write_text(spec.read_text().replace("rounds: 3", "rounds: 1").replace("min_sites: 2", "min_sites: 1"))
    with (job / "app" / "zeros.bin").open("wb") as handle:
        handle.truncate(ZEROS)
    return job


def test_a_large_compressible_job_is_packed_with_progress_and_accepted(fed, as_admin, tty, tmp_path):
    """A job with a 100 MB zero file is packed with a progress bar on a terminal, accepted, and runs to FINISHED."""
    result = run_flctl("job", "submit", big_job(tmp_path), "--watch")

    assert result.code == 0, tty.getvalue() + fed.logs()
    assert "packing big-job" in tty.getvalue()
    assert "FINISHED" in tty.getvalue()


def test_download_shows_progress_on_a_terminal_only(fed, as_admin, tty, tmp_path):
    """`job download` draws a progress bar on a terminal; with --json or --quiet it draws none."""
    job_id = run_flctl("job", "submit", big_job(tmp_path), "--watch", "--json").json()["id"]
    tty.truncate(0)

    shown = run_flctl("job", "download", job_id, "-o", tmp_path / "shown")
    drawn = tty.getvalue()
    tty.truncate(0)
    tty.seek(0)
    as_json = run_flctl("job", "download", job_id, "-o", tmp_path / "json", "--json")
    quiet = run_flctl("--quiet", "job", "download", job_id, "-o", tmp_path / "quiet")

    assert (shown.code, as_json.code, quiet.code) == (0, 0, 0)
    assert f"downloading {job_id}" in drawn
    assert "downloading" not in tty.getvalue()
    assert as_json.json() == {"id": job_id, "path": str(tmp_path / "json" / job_id)}
    for folder in ("shown", "json", "quiet"):
        assert (tmp_path / folder / job_id / "metrics.json").is_file()


@pytest.mark.parametrize("bad_id", ["../x", "/etc", "a/b", "", ".hidden"])
def test_download_checks_the_id_before_making_anything(fed, as_admin, tmp_path, monkeypatch, bad_id):
    """An id that is not a job id exits 2 naming it, and no folder is made (neither OUT nor OUT/../x)."""
    monkeypatch.chdir(tmp_path)

    result = run_flctl("job", "download", bad_id, "-o", tmp_path / "out" / "deeper")

    assert result.code == 2
    assert "is not a job id" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_download_of_an_unknown_job_leaves_no_folder(fed, as_admin, tmp_path):
    """A well-formed id the server does not know exits 1 and leaves no empty OUT/ID folder behind."""
    result = run_flctl("job", "download", "0123456789ab", "-o", tmp_path)

    assert result.code == 1
    assert not (tmp_path / "0123456789ab").exists()


def test_quiet_submit_watch_prints_no_progress(fed, as_admin, tty, tmp_path):
    """`flctl --quiet job submit JOB --watch` on a terminal draws no bar and no round lines, and exits 0."""
    result = run_flctl("--quiet", "job", "submit", big_job(tmp_path), "--watch")

    assert result.code == 0, fed.logs()
    assert tty.getvalue() == ""


def test_an_interrupted_download_leaves_no_partial_file_and_no_folder(fed, tmp_path):
    """Ctrl-C in the middle of a download: no `.artifacts.zip.part`, no half-made OUT/ID folder; a later download
    of the same job works."""
    from flctl.node.admin.admin_client import AdminClient

    with AdminClient.from_kit(fed.admin_kit) as admin:
        job_id = admin.submit_job(big_job(tmp_path))
        list(admin.watch(job_id))

        def interrupt(received: int, total: int | None) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            admin.download_job(job_id, tmp_path / "out", progress=interrupt)
        left = list((tmp_path / "out").rglob("*"))
        again = admin.download_job(job_id, tmp_path / "out")

    assert left == []
    assert (again / "job.json").is_file() and not list(again.glob(".*.part"))
