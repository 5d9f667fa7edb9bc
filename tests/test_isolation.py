"""What a job's code can read: the kit's key, the CA's, another job's files, the daemon's environment (issue 18, M4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flctl.node.config.resources import load_resources
from flctl.node.site import sandbox
from flctl.provisioner.errors import KitError

from .federation import FLCTL, make_federation, running
from .test_federation import wait_status

SECRET = "FLCTL_TEST_CLOUD_SECRET"
SECRET_VALUE = "aws-secret-7f3a9c"

PROBE = r'''
import json, os, sys
import flctl.client as fl

targets = json.loads(os.environ["PROBE_TARGETS"])
targets["parent environ"] = f"/proc/{os.getppid()}/environ"
results = {}
for name, path in targets.items():
    try:
        with open(path, "rb") as f:
            data = f.read()
        results[name] = f"READ {len(data)} bytes" + (" with the secret" if b"aws-secret" in data else "")
    except OSError as exc:
        results[name] = f"DENIED {type(exc).__name__}"
results["own environment"] = "has the secret" if any("aws-secret" in v for v in os.environ.values()) else "clean"
results["environment names"] = sorted(os.environ)
try:
    os.kill(os.getppid(), 0)  # signal 0: only the permission check
    results["signal the job process"] = "ALLOWED"
except OSError as exc:
    results["signal the job process"] = f"DENIED {type(exc).__name__}"
print("PROBE " + json.dumps(results), flush=True)
fl.init()
while fl.running():
    model = fl.receive()
    fl.send(fl.Model(params=model.params, num_examples=1))
'''

VICTIM = r'''
import flctl.client as fl
open("victim.txt", "w").write("the victim's data")
fl.init()
while fl.running():
    model = fl.receive()
    fl.send(fl.Model(params=model.params, num_examples=1))
'''


def write_job(root: Path, name: str, script: str, env: dict[str, str] | None = None, sites: str = "all") -> Path:
    job = root / name
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(script)
    env_yaml = json.dumps(env or {})
    (job / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: 1, "
                                 f"round_timeout_s: 60}}}}\nsites: {sites}\napp: {{command: [python, train.py], "
                                 f"env: {env_yaml}}}\n")
    return job


def probe_results(lines: list[str]) -> dict[str, object]:
    found = [line.split("PROBE ", 1)[1] for line in lines if "PROBE " in line]
    assert found, "the probe printed nothing:\n" + "\n".join(lines[-30:])
    result: dict[str, object] = json.loads(found[0])
    return result


def test_job_code_at_a_site_cannot_read_the_kit_key_the_ca_key_another_job_or_the_daemon_environment(tmp_path):
    """A signed job's script at a confined site reads none of the site's secrets; at a site with job_isolation:
    off the same script reads them (the probe works), and no site passes its own environment on."""
    abi = sandbox.landlock_abi()
    fed = make_federation(tmp_path, sites=2)
    resources = fed.kit("site-2") / "local" / "resources.yml"
    resources.write_text(resources.read_text() + "\njob_isolation: off\n")  # the positive control
    with running(fed, sites=[]):
        for site in fed.sites:
            fed.start(site, env={SECRET: SECRET_VALUE})
        fed.wait_online(fed.sites)
        sites = {s["name"]: s for s in fed.flctl_json("site", "ls")}
        expected = f"landlock v{abi}" if abi else ("user nobody" if os.geteuid() == 0 else "none (refuses jobs)")
        assert sites["site-1"]["isolation"] == expected
        assert sites["site-2"]["isolation"] == "off"
        assert "isolation" in fed.flctl("site", "ls").stdout

        victim = fed.flctl_json("job", "submit", write_job(tmp_path / "jobs", "victim", VICTIM))["id"]
        assert wait_status(fed, victim)["status"] == ("FINISHED" if abi else "FAILED")

        daemon_pids = {site: int((fed.kit(site) / "workspace" / "node.pid").read_text().split()[0])
                       for site in fed.sites}
        targets = {
            "kit key": str(fed.kit("site-1") / "startup" / "site.key"),
            "other site's kit key": str(fed.kit("site-2") / "startup" / "site.key"),
            "CA key": str(fed.root / "ws" / "fedtest" / "state" / "ca.key"),
            "another job": str(fed.kit("site-1") / "workspace" / "jobs" / victim / "job" / "app" / "victim.txt"),
            "daemon environ site-1": f"/proc/{daemon_pids['site-1']}/environ",
            "site audit log": str(fed.kit("site-1") / "workspace" / "audit.jsonl"),
        }
        probe = write_job(tmp_path / "jobs", "probe", PROBE, {"PROBE_TARGETS": json.dumps(targets)})
        job_id = fed.flctl_json("job", "submit", probe)["id"]
        done = wait_status(fed, job_id)
        logs = [json.loads(line) for line in fed.flctl("job", "logs", job_id, "--json").stdout.splitlines()]

    by_site = {site: [e["line"] for e in logs if e["site"] == site] for site in fed.sites}
    assert SECRET_VALUE not in json.dumps(logs)
    if not abi:  # no Landlock: this site runs as another user, or refuses the job
        assert done["status"] == "FAILED", done
        return
    assert done["status"] == "FINISHED", done["error"] + json.dumps(logs)[-3000:]
    assert by_site["site-1"][0] == f"isolation at site-1: landlock v{abi}"
    confined = probe_results(by_site["site-1"])
    for name in (*targets, "parent environ"):
        assert str(confined[name]).startswith("DENIED"), (name, confined[name])
    assert confined["own environment"] == "clean"
    if abi >= 6:  # Landlock's signal scope: the script cannot signal the job process or the daemon
        assert str(confined["signal the job process"]).startswith("DENIED"), confined
    names = set(confined["environment names"])  # type: ignore[arg-type]
    assert SECRET not in names and "FLCTL_KIT" not in names
    assert names <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR", "PYTHONPATH", "PYTHONUNBUFFERED",
                     "PROBE_TARGETS", "FLCTL_API_ADDRESS", "FLCTL_API_AUTHKEY", "FLCTL_SITE", "FLCTL_JOB_ID",
                     "FLCTL_FRAMEWORK", "FLCTL_OUTPUT_DIR"}, \
        names
    unconfined = probe_results(by_site["site-2"])  # the same probe, unconfined: it reads what it is pointed at
    assert by_site["site-2"][0] == "isolation at site-2: off"
    assert str(unconfined["kit key"]).startswith("READ"), unconfined
    assert str(unconfined["CA key"]).startswith("READ"), unconfined
    assert unconfined["own environment"] == "clean"  # the minimal environment holds even when confinement is off


def test_a_member_cannot_read_a_job_s_logs(tmp_path):
    """Job logs follow the download right: a member (no download right) is refused with exit 4, the submitter reads
    them."""
    admins = [("pa@a.org", "a", "project_admin"), ("member@a.org", "a", "member")]
    fed = make_federation(tmp_path, sites=1, admins=admins)
    with running(fed):
        job_id = fed.flctl_json("job", "submit", write_job(tmp_path / "jobs", "hello", VICTIM))["id"]
        wait_status(fed, job_id)
        member = fed.flctl("job", "logs", job_id, "--kit", fed.kit("member@a.org"))
        assert member.returncode == 4, member.stderr
        assert "download_job" in member.stderr
        assert fed.flctl("job", "show", job_id, "--kit", fed.kit("member@a.org")).returncode == 0
        assert fed.flctl("job", "logs", job_id).returncode == 0


SIM_PROBE = r'''
import json, os
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    targets = json.loads(os.environ["PROBE_TARGETS"])
    targets["parent environ"] = f"/proc/{os.getppid()}/environ"
    targets["another site's log"] = os.path.join(os.environ["PROBE_LOGS"], "site-1.log")
    results = {}
    for name, path in targets.items():
        try:
            with open(path, "rb") as f:
                data = f.read()
            results[name] = f"READ {len(data)} bytes"
        except OSError as exc:
            results[name] = f"DENIED {type(exc).__name__}"
    results["own environment"] = "has the secret" if any("aws-secret" in v for v in os.environ.values()) else "clean"
    if fl.site_name() == "site-2":
        print("PROBE " + json.dumps(results), flush=True)
    fl.send(fl.Model(params=model.params, num_examples=1))
'''


def test_job_code_in_the_simulator_cannot_read_outside_its_app_folder_or_the_simulation_environment(tmp_path):
    """`flctl simulate` (with a relative workspace): a script reads its --data but neither a key beside the
    workspace, another simulation's output, another site's log, the parent's /proc environ nor the caller's secret
    variable."""
    abi = sandbox.landlock_abi()
    (tmp_path / "startup").mkdir()
    (tmp_path / "startup" / "site.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "relws" / "other-sim").mkdir(parents=True)
    (tmp_path / "relws" / "other-sim" / "model.txt").write_text("another simulation's output")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("1,2\n")
    targets = {"kit key": str(tmp_path / "startup" / "site.key"),
               "another simulation": str(tmp_path / "relws" / "other-sim" / "model.txt")}
    granted = {"granted data": str(tmp_path / "data" / "x.csv")}
    job = write_job(tmp_path / "jobs", "probe", SIM_PROBE, {"PROBE_TARGETS": json.dumps({**targets, **granted}),
                                                           "PROBE_LOGS": str(tmp_path / "relws" / "probe" / "logs")})
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "--workers", "1", "-w", "relws", "--data", "data",
                          "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
                         env={**os.environ, SECRET: SECRET_VALUE})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["isolation"] == (f"landlock v{abi}" if abi else "none")
    lines = (tmp_path / "relws" / "probe" / "logs" / "site-2.log").read_text().splitlines()
    assert lines[0].endswith(f"isolation: {result['isolation']}")
    found = probe_results(lines)
    assert found["own environment"] == "clean"
    assert found["granted data"] == "READ 4 bytes"
    if abi:
        for name in (*targets, "parent environ", "another site's log"):
            assert str(found[name]).startswith("DENIED"), (name, found[name])
    else:  # no Landlock here: only the environment is kept from the script
        assert str(found["kit key"]).startswith("READ")


def test_simulate_with_a_relative_workspace(tmp_path):
    """`flctl simulate JOB -w relws` (relative) finishes and writes its results under ./relws."""
    job = write_job(tmp_path / "jobs", "hello", VICTIM)
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", "relws", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "FINISHED"
    assert (tmp_path / "relws" / "hello" / "models" / "final.safetensors").is_file()
    assert "Traceback" not in out.stderr


def test_the_launcher_runs_a_command_as_another_user(tmp_path):
    """`python -m flctl.node.site.sandbox --user nobody -- CMD` (the fallback without Landlock) cannot read root's 0600
    file; not root: it refuses, exit 126, one sentence."""
    secret = tmp_path / "site.key"
    secret.write_text("key")
    secret.chmod(0o600)
    out = subprocess.run([sys.executable, "-m", "flctl.node.site.sandbox", "--user", "nobody", "--", "/bin/cat",
                          str(secret)], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode != 0
    assert "key" not in out.stdout
    if os.geteuid() != 0:
        assert out.returncode == 126 and "cannot confine" in out.stderr
    else:
        assert "Permission denied" in out.stderr


def test_the_launcher_confines_with_landlock(tmp_path):
    """With Landlock (kernel 6.18 here), the launcher's command reads its granted folder and nothing else."""
    abi = sandbox.landlock_abi()
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "f").write_text("granted")
    (tmp_path / "no").mkdir()
    (tmp_path / "no" / "f").write_text("refused")
    out = subprocess.run([sys.executable, "-m", "flctl.node.site.sandbox", "--read", "/usr", "--read", "/lib",
                          "--read", "/lib64", "--read", "/bin", "--read", str(tmp_path / "ok"), "--", "/bin/cat",
                          str(tmp_path / "ok" / "f"), str(tmp_path / "no" / "f")],
                         capture_output=True, text=True, timeout=30, check=False)
    if not abi:
        assert out.returncode == 126 and "has no Landlock" in out.stderr
        return
    assert out.stdout == "granted"
    assert "Permission denied" in out.stderr and out.returncode != 0


def test_isolation_choice_and_environment():
    """Landlock first, then another user for a root site, else none; the script's environment is the minimal one."""
    assert sandbox.choose(7, 1000, "nobody").describe() == "landlock v7"
    assert sandbox.choose(0, 0, "jobs").describe() == "user jobs"
    assert sandbox.choose(0, 1000, "nobody").describe() == "none"
    env = sandbox.script_env({"PATH": "/bin", SECRET: SECRET_VALUE, "CUDA_VISIBLE_DEVICES": "1", "LANG": "C"},
                             job_env={"LR": "0.1"}, allow=["CUDA_VISIBLE_DEVICES"], home=Path("/w"), tmp=Path("/w/t"))
    assert env == {"PATH": "/bin", "LANG": "C", "CUDA_VISIBLE_DEVICES": "1", "HOME": "/w", "TMPDIR": "/w/t",
                   "PYTHONUNBUFFERED": "1", "LR": "0.1"}


@pytest.mark.parametrize(("text", "words"), [
    ("job_isolation: maybe\n", "job_isolation must be required, preferred or off"),
    ("data_paths: [data/x]\n", "data_paths must be absolute paths, not 'data/x'"),
    ("job_env_allow: CUDA_VISIBLE_DEVICES\n", "job_env_allow must be a list"),
    ("job_user: ''\n", "job_user must be a user name or number"),
])
def test_bad_isolation_settings_are_refused(tmp_path, text, words):
    """A bad isolation setting in local/resources.yml stops the node, naming the file, the key and what is allowed."""
    path = tmp_path / "resources.yml"
    path.write_text(text)
    with pytest.raises(KitError, match=words) as caught:
        load_resources(path)
    assert str(path) in str(caught.value)


def test_isolation_settings_are_read(tmp_path):
    """job_isolation, job_user, job_env_allow and data_paths are read as written; required is the default."""
    path = tmp_path / "resources.yml"
    assert load_resources(path).job_isolation == "required"
    path.write_text("job_isolation: preferred\njob_user: flrun\njob_env_allow: [CUDA_VISIBLE_DEVICES]\n"
                    "data_paths: [/data/x]\n")
    got = load_resources(path)
    assert (got.job_isolation, got.job_user, got.job_env_allow, got.data_paths) == (
        "preferred", "flrun", ("CUDA_VISIBLE_DEVICES",), ("/data/x",))


@pytest.mark.parametrize(("setting", "found", "note"), [
    ("required", sandbox.Isolation("landlock", abi=7), "landlock v7"),
    ("required", sandbox.Isolation("user", user="nobody"), "user nobody"),
    ("required", sandbox.Isolation("none"), "none (refuses jobs)"),
    ("preferred", sandbox.Isolation("none"), "none"),
    ("off", sandbox.Isolation("landlock", abi=7), "off"),
])
def test_what_a_site_reports_about_its_isolation(setting, found, note):
    """site ls and the job's first log line say the isolation found, and that a site requiring one refuses jobs."""
    from flctl.node.config.resources import Resources
    from flctl.node.site.job_process import isolation_note, job_isolation

    assert isolation_note(found, Resources(job_isolation=setting)) == note
    if setting == "off":
        assert job_isolation(Resources(job_isolation="off")).kind == "none"


def test_a_kit_under_a_granted_path_is_noticed(tmp_path):
    """A kit placed under a folder scripts may read (a data path, /usr) is found, so the site refuses to run jobs."""
    grants = sandbox.script_grants(tmp_path / "ws" / "jobs" / "j1" / "job", None, [str(tmp_path / "data")])
    assert sandbox.exposing(grants, tmp_path / "data" / "kits" / "site-1" / "startup") == str(tmp_path / "data")
    assert sandbox.exposing(grants, Path("/usr/local/flctl/site-1/startup")) == "/usr"
    assert sandbox.exposing(grants, tmp_path / "kits" / "site-1" / "startup") == ""
    assert sandbox.exposing(grants, tmp_path / "database") == ""  # a sibling whose name starts like a grant


def test_a_site_refuses_jobs_when_its_kit_is_readable_through_a_data_path(tmp_path):
    """data_paths that cover the kit (or Landlock missing where it is required) make the job process refuse, naming
    the path and what to do."""
    from flctl.node.config.resources import Resources
    from flctl.node.site.job_process import isolation_refusal

    kit, job_dir = tmp_path / "site-1", tmp_path / "site-1" / "workspace" / "jobs" / "j1"
    landlock = sandbox.Isolation("landlock", abi=7)
    exposed = sandbox.Confinement(landlock, job_dir / "job", (str(tmp_path),))
    reason = isolation_refusal(exposed, Resources(), kit, job_dir)
    assert reason.startswith(f"{kit / 'startup'} lies under {tmp_path}") and "data_paths" in reason
    fine = sandbox.Confinement(landlock, job_dir / "job", (str(tmp_path / "data"),))
    assert isolation_refusal(fine, Resources(), kit, job_dir) == ""
    bare = sandbox.Confinement(sandbox.Isolation("none"), job_dir / "job")
    assert "job_isolation: required" in isolation_refusal(bare, Resources(), kit, job_dir)
    assert isolation_refusal(bare, Resources(job_isolation="preferred"), kit, job_dir) == ""
