"""`flctl deploy slurm`: batch scripts from real kits; a site's script, run as Slurm runs it (bash, SIGTERM to
the batch shell), joins a real local federation and stops cleanly. No Slurm controller runs here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from flctl.cloud.node_probe import alive
from tests.federation import FLCTL, make_federation


def flctl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def test_a_sites_script_asks_for_its_resources_joins_the_federation_and_stops_on_sigterm(tmp_path: Path) -> None:
    """#SBATCH from resources.yml; the script run with bash brings site-1 online; SIGTERM ends it, cleanly."""
    federation = make_federation(tmp_path, sites=2)
    resources = federation.kit("site-1") / "local" / "resources.yml"
    resources.write_text(resources.read_text().replace("cpus: auto", "cpus: 4").replace("gpus: []", "gpus: [0, 1]")
                         + "memory_mb: 8192\n")
    done = flctl("deploy", "slurm", federation.prod, "-o", tmp_path / "slurm", "--time", "2-00:00:00",
                 "--partition", "fl", "--flctl", FLCTL)
    assert done.returncode == 0, done.stderr
    script = (tmp_path / "slurm" / "site-1.sbatch").read_text()
    sbatch = [line.split(" ", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH")]
    assert {"--cpus-per-task=4", "--mem=8192M", "--gres=gpu:2", "--time=2-00:00:00", "--partition=fl",
            "--signal=B:USR1@120", "--requeue", "--open-mode=append"} <= set(sbatch)
    assert not any(line.startswith("--nodelist") for line in sbatch)  # no --server: no server job
    assert sorted(p.name for p in (tmp_path / "slurm").iterdir()) == ["logs", "site-1.sbatch", "site-2.sbatch",
                                                                    "slurm.json", "submit.sh"]
    for name in ("site-1.sbatch", "site-2.sbatch", "submit.sh"):
        assert subprocess.run(["bash", "-n", tmp_path / "slurm" / name], check=False).returncode == 0
    workspace = tmp_path / "site-1-ws"
    try:
        federation.start("localhost")
        batch = subprocess.Popen(["bash", tmp_path / "slurm" / "site-1.sbatch"], start_new_session=True,
                                 env={**os.environ, "FLCTL_WORKSPACE": str(workspace)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            federation.wait_online(["site-1"])
            assert alive(workspace)[0]
            batch.send_signal(signal.SIGTERM)  # what scancel sends (to the batch shell too)
            assert batch.wait(timeout=60) == 0
            assert not alive(workspace)[0]
        finally:
            if batch.poll() is None:
                os.killpg(batch.pid, signal.SIGKILL)
                batch.wait(timeout=10)
    finally:
        federation.stop_all()


def test_bad_options_are_refused_with_exit_2_and_nothing_written(tmp_path: Path) -> None:
    """A time limit or partition Slurm would not take."""
    federation = make_federation(tmp_path, sites=1)
    done = flctl("deploy", "slurm", federation.prod, "-o", tmp_path / "o1", "--time", "soon")
    assert done.returncode == 2 and "[--time]" in done.stderr
    done = flctl("deploy", "slurm", federation.prod, "-o", tmp_path / "o2", "--partition", "a b")
    assert done.returncode == 2 and "[--partition]" in done.stderr
    done = flctl("deploy", "slurm", federation.prod, "-o", tmp_path / "o3", "--server-node", "n1")
    assert done.returncode == 2 and "[--server-node] needs --server" in done.stderr
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))
    done = flctl("deploy", "slurm", "status", tmp_path)  # not a folder `flctl deploy slurm` wrote
    assert done.returncode == 2 and "has no slurm.json" in done.stderr and "Traceback" not in done.stderr


def test_squeue_lines_and_rollout_targets_are_read_exactly(tmp_path: Path) -> None:
    """squeue's formatted lines by job name (a reason with spaces and '|' kept whole); `--to` parsed or refused;
    the rollout's files: keys 0600, scripts 0755, local/ site-owned, no admin kit, scripts reading the copies."""
    import pytest

    from flctl.cloud.deploy_errors import DeployInputError
    from flctl.cloud.project_kits import load_project_kits
    from flctl.cloud.slurm_jobs import parse_squeue
    from flctl.cloud.slurm_rollout import SharedFolder, files
    from flctl.cloud.slurm_scripts import SlurmOptions

    text = "12|flctl-p-site-1|RUNNING|1:02|6-23:58:58|n01|None\n13|flctl-p-site-2|PENDING|0:00|7-00:00:00||" \
           "Dependency (a|b)\n"
    assert parse_squeue(text) == {
        "flctl-p-site-1": [{"job_id": "12", "state": "RUNNING", "elapsed": "1:02", "time_left": "6-23:58:58",
                            "node": "n01", "reason": "None"}],
        "flctl-p-site-2": [{"job_id": "13", "state": "PENDING", "elapsed": "0:00", "time_left": "7-00:00:00",
                            "node": "", "reason": "Dependency (a|b)"}]}
    shared = SharedFolder.parse("alice@login.hpc.org:/scratch/fl")
    assert (shared.user, shared.host, str(shared.path)) == ("alice", "login.hpc.org", "/scratch/fl")
    assert SharedFolder.parse("login:/fl").user is None
    for bad in ("login", "login:relative", "a@b:/x/../etc", "@:/x"):
        with pytest.raises(DeployInputError, match=r"\[--to\]"):
            SharedFolder.parse(bad)
    federation = make_federation(tmp_path, sites=2)
    planned = files(load_project_kits(federation.prod), SlurmOptions(), shared)
    modes = {str(p.relative_to(shared.path)): (f.mode, f.site_owned) for p, f in planned.items()}
    assert modes["kits/site-1/startup/site.key"] == (0o600, False)
    assert modes["kits/site-1/startup/start.sh"] == (0o755, False)
    assert modes["kits/site-2/local/policy.yml"] == (0o644, True)
    assert modes["slurm/site-1.sbatch"] == (0o755, False) and modes["slurm/slurm.json"] == (0o644, False)
    assert not any(p.startswith(("kits/localhost", "kits/admin")) for p in modes)  # no --server: no server kit
    assert "KIT=/scratch/fl/kits/site-1\n" in planned[shared.slurm / "site-1.sbatch"].data.decode()


def test_a_slurm_hosts_block_is_checked_field_by_field_and_the_inventory_is_planned_without_connecting(
        tmp_path: Path) -> None:
    """`provider: slurm` hosts in an inventory: a bad `slurm:` field, a missing login address and a stray field are
    refused with exit 2, each named with its line; a good one is planned by `flctl deploy slurm INVENTORY
    --dry-run` (the group's default for an inventory) without any SSH: each node's own folder on the shared file
    system, the server first. Two hosts of one cluster may share install_dir (each node gets INSTALL_DIR/NAME)."""
    federation = make_federation(tmp_path, sites=1)
    head = f"api_version: 1\nkits: {federation.prod}\nhosts:\n"
    bad = tmp_path / "bad.yml"
    bad.write_text(head + "  - {participant: site-1, provider: slurm, address: login, user: u, install_dir: /s, "
                          "slurm: {time_limit: soon, gpus: -1, nodes: 2}}\n"
                          "  - {participant: localhost, provider: slurm, user: u, install_dir: /s, slurm: {}}\n")
    done = flctl("deploy", "slurm", bad, "--dry-run")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    for text in ("bad.yml:4: hosts[0].slurm.time_limit", "bad.yml:4: hosts[0].slurm.gpus",
                 "bad.yml:4: hosts[0].slurm.nodes", "bad.yml:5: hosts[1].address: 'address' is required with "
                 "provider: slurm: the cluster's login node"):
        assert text in done.stderr, (text, done.stderr)
    good = tmp_path / "good.yml"
    good.write_text(head + "  - {participant: site-1, provider: slurm, address: login, user: u, install_dir: /s, "
                           "slurm: {partition: fl}}\n"
                           "  - {participant: localhost, provider: slurm, address: login, user: u, "
                           "install_dir: /s, slurm: {}}\n")
    done = flctl("deploy", "slurm", good, "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    planned = [(r["participant"], r["status"], r["changes"][0]) for r in json.loads(done.stdout)]
    assert planned == [("site-1", "planned", "write the kit and batch script to /s/site-1"),
                       ("localhost", "planned", "write the kit and batch script to /s/localhost")]
    scripts = flctl("deploy", "slurm", federation.prod, "-o", tmp_path / "out")  # the folder form is unchanged
    assert scripts.returncode == 0 and (tmp_path / "out" / "site-1.sbatch").is_file(), scripts.stderr
