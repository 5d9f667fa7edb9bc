"""A site whose job workspace is on a full disk fails that job with a clear reason, keeps running, and takes the
next job once space is free."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .federation import Federation, make_federation, running
from .job_folders import job_folder
from .test_faults import _mount_tmpfs, _unmount, fill


@pytest.fixture(scope="module")
def fed_on_small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, Path]]:
    """A federation whose site-1 keeps its job workspaces on a 4 MB tmpfs."""
    fed = make_federation(tmp_path_factory.mktemp("sitedisk"), sites=1)
    jobs = fed.kit("site-1") / "workspace" / "jobs"
    jobs.mkdir(parents=True)
    if not _mount_tmpfs(jobs, 4):
        pytest.skip("mounting a tmpfs for the site's job workspace needs root")
    try:
        with running(fed) as started:
            yield started, jobs
    finally:
        _unmount(jobs)



def test_a_full_disk_at_a_site_fails_the_job_clearly_and_the_next_job_runs(fed_on_small_disk, tmp_path):
    """With the site's job workspace full, the job FAILS saying the site's disk is full; the daemon stays up and,
    once space is freed, the next job FINISHES there."""
    fed, jobs = fed_on_small_disk
    filler = jobs / "filler"
    try:
        fill(filler)
        out = fed.flctl("job", "submit", job_folder(tmp_path, "on-full-disk", round_timeout_s=60), "--watch", "--json")
        assert out.returncode == 1, out.stdout + out.stderr + fed.logs()
        job_id = json.loads(out.stdout)["id"]
        show = fed.flctl_json("job", "show", job_id)
        assert show["status"] == "FAILED"
        site = {s["name"]: s for s in show["sites"]}["site-1"]
        assert "the site's disk is full" in site["error"], site
        assert "Traceback" not in site["error"]
        assert not (jobs / job_id / "job").exists(), "nothing half-extracted is left"
        assert fed.processes["site-1"].poll() is None, "the site daemon keeps running"
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
    out = fed.flctl("job", "submit", job_folder(tmp_path, "after-space-freed", round_timeout_s=60), "--watch", "--json")
    assert out.returncode == 0, out.stdout + out.stderr + fed.logs()
