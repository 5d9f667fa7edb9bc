"""A job that finished without a site (min_sites allowed it) says so: "FINISHED (site-2 failed in round 2: ...)" on
`flctl job submit --watch` and in `flctl job show`, never a bare FINISHED."""

from __future__ import annotations

from pathlib import Path

from tests.federation import make_federation, running
from tests.job_folders import job_folder

FAILS_IN_ROUND_2 = """
import os
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    if os.environ["FLCTL_SITE"] == "site-2" and model.round == 1:
        raise RuntimeError("disk full")
    fl.send(fl.Model(params={"w": [1.0]}, num_examples=1))
"""


def test_a_dropped_site_is_named_on_watch_and_in_show(tmp_path: Path) -> None:
    """site-2's script raises in the second round; the job FINISHES on site-1 and both outputs name site-2."""
    job = job_folder(tmp_path, "dropping", sites=("site-1", "site-2"), rounds=3, script=FAILS_IN_ROUND_2)
    with running(make_federation(tmp_path)) as fed:
        watched = fed.flctl("job", "submit", job, "--watch")
        assert watched.returncode == 0, watched.stderr
        job_id = watched.stderr.split("submitted job ")[1].split()[0]
        shown = fed.flctl("job", "show", job_id)
    assert f"job {job_id} FINISHED (site-2 failed in round 2: " in watched.stderr
    assert "RuntimeError: disk full" in watched.stderr.split("site-2 failed in round 2: ")[1]
    status_line = next(line for line in shown.stdout.splitlines() if line.startswith("status"))
    assert "FINISHED (site-2 failed in round 2: " in status_line
