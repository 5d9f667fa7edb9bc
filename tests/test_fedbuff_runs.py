"""FedBuff for real: in `flctl simulate` (forked workers, one per site) and on a local federation (real mTLS, real
site processes), with sites of different speeds; `flctl job show` counts its versions as rounds, and a site that
stays away too long has its update refused, the reason in the job's log and its report."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from flctl.node.admin.admin_client import AdminClient

from .conftest import ROOT
from .federation import FLCTL, events_until_round, make_federation, running

EXAMPLE_APP = ROOT / "playbooks" / "jobs" / "fedbuff" / "app"

SLOW_FIRST = """
import os, time
import numpy as np
import flctl.client as fl

fl.init()
site = fl.site_name()
first = True
while fl.running():
    model = fl.receive()
    # site-3 stays away with its first task (version 0) while the others make versions, then comes back
    time.sleep(4.0 if site == "site-3" and first else 0.5)
    first = False
    w = np.asarray(model.params["w"])
    fl.send(fl.Model(params={"w": w + 1.0}, metrics={"loss": float(site[-1])}, num_examples=1))
"""

PLUS_ONE = """
import time
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    time.sleep(0.3)
    fl.send(fl.Model(params={"w": np.asarray(model.params["w"]) + 1.0}, num_examples=1))
"""


def fedbuff_job(root: Path, args: dict[str, object], script: str | None = None, env: str = "{}") -> Path:
    """A fedbuff job starting from a safetensors initial model: the example's app, or `script` as app/train.py."""
    folder = root / "fedbuff"
    (folder / "app").mkdir(parents=True)
    (folder / "model").mkdir()
    if script is None:
        for name in ("train.py", "model.py"):
            (folder / "app" / name).write_text((EXAMPLE_APP / name).read_text())
        save_file({"w": np.zeros((4, 4), np.float32), "b": np.zeros(4, np.float32)},
                  str(folder / "model" / "initial.safetensors"))
    else:
        (folder / "app" / "train.py").write_text(script)
        save_file({"w": np.zeros(3, np.float32)}, str(folder / "model" / "initial.safetensors"))
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: fedbuff\nworkflow: {{type: fedbuff, args: {json.dumps(args)}}}\nsites: all\n"
        f"min_sites: 2\napp: {{command: [python, train.py], env: {env}}}\n"
        "initial_model: model/initial.safetensors\n")
    return folder


def test_fedbuff_runs_in_the_simulator_with_sites_of_different_speeds(tmp_path: Path):
    """The example's app, sites 1x-3x: FINISHED with 8 versions, each a round with its sites' staleness; the
    checkpoints and the report are written; site-1 (the fastest) answers most."""
    # Prepare
    job = fedbuff_job(tmp_path, {"updates": 8, "buffer_size": 2, "site_timeout_s": 120}, env="{STEP_S: '0.05'}")
    # Execute
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "3", "--workers", "3", "-w", str(tmp_path / "ws"),
                          "--json"], capture_output=True, text=True, timeout=300, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["status"] == "FINISHED"
    run = tmp_path / "ws" / "fedbuff"
    assert sorted(p.name for p in (run / "models").glob("round-*")) == [f"round-{i}.safetensors" for i in range(8)]
    metrics = json.loads((run / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert "staleness" in text
    report = json.loads((run / "reports" / "fedbuff.json").read_text())
    assert report["version"] == 8
    accepted = {site: tally["accepted"] for site, tally in report["sites"].items()}
    assert sum(accepted.values()) == 16 and accepted["site-1"] == max(accepted.values())
    final = load_file(run / "models" / "final.safetensors")
    assert set(final) == {"w", "b"} and final["w"].dtype == np.float32 and np.abs(final["w"]).sum() > 0


def test_fedbuff_on_a_real_federation_refuses_a_site_that_stayed_away_and_shows_versions_as_rounds(tmp_path: Path):
    """Three real sites over mTLS; site-3 sits on its first task for 4 s while the others make a version every
    0.5 s: its update is refused by max_staleness (the reason in `flctl job logs` and the report), it trains the
    newest model after; `flctl job show --json` counts the 24 versions as rounds."""
    # Prepare
    job = fedbuff_job(tmp_path, {"updates": 24, "buffer_size": 2, "max_staleness": 2, "site_timeout_s": 120},
                      script=SLOW_FIRST)
    with running(make_federation(tmp_path, sites=3)) as fed:
        # Execute
        watched = fed.flctl("job", "submit", job, "--watch", timeout=240)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        job_id = watched.stderr.split("submitted job ")[1].split()[0]
        shown = fed.flctl_json("job", "show", job_id)
        printed = fed.flctl("job", "show", job_id).stdout
        logs = fed.flctl("job", "logs", job_id, "--site", "server").stdout
    # Assert
    assert shown["status"] == "FINISHED"
    assert shown["rounds"] == 24 and shown["rounds_done"] == 24
    assert "site-3's update refused: it trained version 0" in logs and "(max_staleness 2)" in logs
    site3 = shown["reports"]["fedbuff"]["sites"]["site-3"]
    assert site3["refused"] >= 1 and site3["refusals"][0].endswith("versions old (max_staleness 2)")
    assert "version 24 of 24" in logs
    assert "# fedbuff: model version 24 of 24, a step every 2 updates; each site's updates" in printed
    after = printed.split("# fedbuff: ")[1].splitlines()
    row = next(line.split("\t") for line in after if line.startswith("site-3\t"))
    assert row[6].endswith("versions old (max_staleness 2)")


def test_fedbuff_resumes_from_its_last_version_after_a_server_kill(tmp_path: Path):
    """SIGKILL the server once version 2 is made; restarted, it resumes from that checkpoint with its state, every
    site gets that version afresh, and the job makes the rest. Each answer adds 1 and the staleness weight is
    constant, so every version adds exactly 1: the final model is the initial one plus 8, whatever the order."""
    # Prepare
    job = fedbuff_job(tmp_path, {"updates": 8, "buffer_size": 2, "staleness_function": "constant",
                                 "site_timeout_s": 120}, script=PLUS_ONE)
    with running(make_federation(tmp_path, sites=2)) as fed:
        with AdminClient.from_kit(fed.admin_kit) as admin:
            job_id = admin.submit_job(job)
            events_until_round(admin, job_id, 1)
        # Execute
        fed.stop("localhost", signal.SIGKILL)
        fed.start("localhost")
        fed.wait_online(fed.sites, timeout=40)
        with AdminClient.from_kit(fed.admin_kit) as admin:
            kinds = [event.kind for event in admin.watch(job_id)]
            info = admin.get_job(job_id)
            target = admin.download_job(job_id, tmp_path / "out")
    # Assert
    assert info.status == "FINISHED", info.error
    assert "resumed" in kinds
    log = (target / "logs" / "server.log").read_text()
    assert "the workflow's state restored from round-" in log and "version 8 of 8" in log
    final = load_file(target / "models" / "final.safetensors")
    np.testing.assert_array_equal(final["w"], np.full(3, 8.0, np.float32))
