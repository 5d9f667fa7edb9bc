"""Hierarchical federations: relays between the server and the sites (issue 31).

The provisioning checks and the combining maths on their own; then real processes over mutual TLS: a server, two
relays under it, a third relay under the first, five sites, FedAvg jobs whose final models are compared with the
same jobs run flat over the same five sites by `flctl simulate` (the same workflow code, no relays), and with the
weighted means worked out here.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from safetensors.numpy import load_file

from flctl.node.jobs.tasks import TaskResult
from flctl.node.relay.combine import combine, refusal_for
from flctl.provisioner.relay_tree import child_toward, top_of

from .federation import ADMIN, FLCTL, Federation, free_port

TREE = {"relay-de": "relay-eu", "site-1": "relay-eu", "site-2": "relay-eu", "site-5": "relay-de",
        "site-3": "relay-us", "site-4": "relay-us"}
# What each site adds to every tensor and the num_examples it answers with. Every relay's total is a power of two,
# so each relay's mean is exact in float32 and only the server's last division rounds, as a flat job's does.
FAILOVER = "site-4"  # connects to the server while relay-us is down
BUMP = {"site-1": 1, "site-2": 2, "site-3": 3, "site-4": 4, "site-5": 5}
EXAMPLES = {"site-1": 1, "site-2": 3, "site-3": 2, "site-4": 2, "site-5": 4}
SCRIPT = """\
import numpy as np
import flctl.client as fl

BUMP = {bump}
EXAMPLES = {examples}
fl.init()
site = fl.site_name()
while fl.running():
    model = fl.receive()
    params = model.params or {{"w": np.zeros(1000, np.float32), "b": np.zeros((3, 2), np.float64)}}
    params = {{name: value + np.asarray(BUMP[site]).astype(value.dtype) for name, value in params.items()}}
    fl.send(fl.Model(params=params, num_examples=EXAMPLES[site], metrics={{"loss": float(BUMP[site])}}))
"""


def project_text(name: str, port: int, relays: dict[str, int] | None) -> str:
    """Five sites; with `relays` (name -> port), under the tree TREE, else all under the server."""
    lines = [f"api_version: 1\nname: {name}\n",
             f"server: {{name: localhost, org: hub, port: {port}, hosts: [127.0.0.1]}}\n"]
    if relays:
        lines.append("relays:\n")
        for relay, relay_port in relays.items():
            parent = TREE.get(relay, "server")
            lines.append(f"  - {{name: {relay}, org: org_{relay}, parent: {parent}, host: 127.0.0.1, "
                         f"port: {relay_port}}}\n")
    lines.append("sites:\n")
    for site in BUMP:
        parent = f", parent: {TREE[site]}" if relays else ""
        parent += ", failover: server" if relays and site == FAILOVER else ""
        lines.append(f"  - {{name: {site}, org: org_{site}{parent}}}\n")
    lines.append(f"admins:\n  - {{name: {ADMIN[0]}, org: {ADMIN[1]}, role: {ADMIN[2]}}}\n")
    lines.append("heartbeat: {interval_s: 0.5, timeout_s: 3}\n")
    return "".join(lines)


def make(root: Path, relays: bool) -> Federation:
    from flctl.provisioner.build import provision
    from flctl.provisioner.project_loader import project_from_document
    from flctl.provisioner.yaml_source import parse_yaml

    port = free_port()
    ports = {"relay-eu": free_port(), "relay-us": free_port(), "relay-de": free_port()} if relays else None
    text = project_text(root.name, port, ports)
    (root / "project.yml").write_text(text)
    result = provision(project_from_document(parse_yaml(text, "project.yml")).project, root / "ws")
    return Federation(root, result.prod_dir, port, sorted(BUMP))


def job(root: Path, name: str, sites: list[str] | None, rounds: int) -> Path:
    folder = root / name
    (folder / "app").mkdir(parents=True)
    named = f"sites: [{', '.join(sites)}]\n" if sites else "min_sites: 2\n"
    (folder / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: "
                                    f"{rounds}, round_timeout_s: 60}}}}\n{named}")
    (folder / "app" / "train.py").write_text(SCRIPT.format(bump=BUMP, examples=EXAMPLES))
    return folder


def run_job(fed: Federation, folder: Path, out: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Submit, wait for the end, download: the final model and the job's record."""
    submitted = fed.flctl("job", "submit", folder, "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        shown = fed.flctl_json("job", "show", job_id)
        if shown["status"] in ("FINISHED", "FAILED", "ABORTED"):
            break
        time.sleep(0.3)
    assert shown["status"] == "FINISHED", f"{shown}\n{fed.flctl('job', 'logs', job_id).stdout}\n{fed.logs()}"
    got = fed.flctl_json("job", "download", job_id, "-o", out)
    return load_file(Path(got["path"]) / "models" / "final.safetensors"), shown


def expected(sites: list[str], rounds: int) -> float:
    """The value of every tensor element after `rounds` of flat FedAvg from zeros, worked out here."""
    mean = sum(EXAMPLES[s] * BUMP[s] for s in sites) / sum(EXAMPLES[s] for s in sites)
    return float(np.float32(rounds * mean)) if rounds == 1 else rounds * mean


# ---------------------------------------------------------------- pure parts


def test_tree_walks():
    assert top_of(TREE, "site-5") == "relay-eu" and top_of(TREE, "site-3") == "relay-us"
    assert top_of(TREE, "relay-eu") == "relay-eu" and top_of(TREE, "site-9") == "site-9"
    assert child_toward(TREE, "relay-eu", "site-5") == "relay-de"
    assert child_toward(TREE, "relay-eu", "site-1") == "site-1"
    assert child_toward(TREE, "relay-eu", "site-3") is None


def test_combined_answers_make_the_flat_weighted_mean():
    """Two relays' combined answers, averaged at the server by their summed weights, give the weighted mean of
    every site's model (numpy's reference) and of every metric; num_examples is the sum."""
    rng = np.random.default_rng(7)
    models = {f"s{i}": {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=5)} for i in range(5)}
    weights = {"s0": 3, "s1": 1, "s2": 7, "s3": 2, "s4": 5}
    loss = {s: float(rng.normal()) for s in models}

    def answer(site: str) -> TaskResult:
        return TaskResult(site, models[site], weights[site], {"loss": loss[site]})

    left = combine([answer("s0"), answer("s1")])
    right = combine([answer("s2"), answer("s3"), answer("s4")])
    assert (left.num_examples, right.num_examples) == (4, 14)
    top = combine([TaskResult("r1", left.params, left.num_examples, left.metrics, left.meta),
                   TaskResult("r2", right.params, right.num_examples, right.metrics, right.meta)])
    total = sum(weights.values())
    for name in ("w", "b"):
        reference = sum(weights[s] * models[s][name] for s in models) / total
        np.testing.assert_allclose(top.params[name], reference, rtol=1e-12)
    assert top.metrics["loss"] == pytest.approx(sum(weights[s] * loss[s] for s in models) / total)
    assert top.meta["relayed_sites"] == ["r1(s0,s1)", "r2(s2,s3,s4)"]


def test_combining_refuses_mixed_answers_and_none():
    with pytest.raises(ValueError, match="no site answered"):
        combine([])
    full = TaskResult("a", {"w": np.ones(2)}, 1, meta={"params_type": "full"})
    diff = TaskResult("b", {"w": np.ones(2)}, 1, meta={"params_type": "diff"})
    with pytest.raises(ValueError, match="diff and full"):
        combine([full, diff])


def test_relays_carry_fedavg_style_workflows_only():
    assert refusal_for("fedavg", {}) == "" and refusal_for("fedopt", {}) == ""
    assert "needs each site's own answer" in refusal_for("cyclic", {})
    assert "encryption: he" in refusal_for("fedavg", {"encryption": "he"})


@pytest.mark.parametrize(("change", "field", "words"), [
    (("relay-eu, org: org_relay-eu, parent: server", "relay-eu, org: org_relay-eu, parent: relay-de"),
     "relays[0].parent", "cycle of parents (relay-eu -> relay-de -> relay-eu)"),
    (("site-3, org: org_site-3, parent: relay-us", "site-3, org: org_site-3, parent: relay-xx"),
     "sites[2].parent", "'relay-xx' is not a relay of this project"),
    (("site-4, org: org_site-4, parent: relay-us", "site-4, org: org_site-4, parent: site-1"),
     "sites[3].parent", "'site-1' is not a relay"),
    (("site-4, org: org_site-4, parent: relay-us", "site-4, org: org_site-4"),
     "sites[3].failover", "failover: server is for a site under a relay"),
])
def test_a_bad_tree_is_refused_at_provisioning(tmp_path, change, field, words):
    """A cycle of relays, or a parent that is not a relay: exit 2, naming the file, line and field; nothing
    written."""
    import subprocess

    text = project_text("badtree", 9443, {"relay-eu": 9444, "relay-us": 9445, "relay-de": 9446})
    assert change[0] in text
    (tmp_path / "project.yml").write_text(text.replace(*change))
    out = subprocess.run([FLCTL, "provision", str(tmp_path / "project.yml"), "-w", str(tmp_path / "ws")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2, out.stderr
    assert "project.yml:" in out.stderr and f"{field}: " in out.stderr and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "ws").exists()


# ---------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def feds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """The relayed federation (the flat runs the jobs are compared with are `flctl simulate`'s: see flat_job)."""
    relayed = make(tmp_path_factory.mktemp("relayed"), relays=True)
    try:
        relayed.start("localhost")
        for relay in ("relay-eu", "relay-us", "relay-de"):
            relayed.start(relay)
        # The relays first: a site started before its relay listens would fail over (site-4) or back off.
        relayed.wait_online(["relay-eu", "relay-us", "relay-de"])
        for site in relayed.sites:
            relayed.start(site)
        relayed.wait_online(["relay-eu", "relay-us", *relayed.sites])
        yield relayed
    finally:
        relayed.stop_all()


def flat_job(folder: Path, sites: list[str] | None, workspace: Path) -> dict[str, np.ndarray]:
    """The job run flat, every site answering the server itself, by `flctl simulate` (the workflow and the
    training scripts of a real run, in worker processes): its final model."""
    out = subprocess.run([FLCTL, "simulate", str(folder), "-w", str(workspace), *([] if sites else ["-n", "5"])],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return load_file(workspace / folder.name / "models" / "final.safetensors")


def test_relay_kits_serve_their_sites_and_call_their_parents(feds):
    relayed = feds
    cert = x509.load_pem_x509_certificate((relayed.kit("relay-de") / "startup" / "relay.crt").read_bytes())
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert "relay" in cert.subject.rfc4514_string()  # OU=relay: its role
    import yaml

    relay = yaml.safe_load((relayed.kit("relay-de") / "startup" / "node.yml").read_text())
    site = yaml.safe_load((relayed.kit("site-5") / "startup" / "node.yml").read_text())
    eu = yaml.safe_load((relayed.kit("relay-eu") / "startup" / "node.yml").read_text())
    assert relay["server"] == {"host": "127.0.0.1", "port": eu["listen"]["port"]}  # its parent
    assert site["server"] == {"host": "127.0.0.1", "port": relay["listen"]["port"]}
    assert relay["parents"] == TREE
    server = {"host": "localhost", "port": relayed.port}
    assert yaml.safe_load((relayed.kit(FAILOVER) / "startup" / "node.yml").read_text())["failover"] == server
    assert "failover" not in yaml.safe_load((relayed.kit("site-3") / "startup" / "node.yml").read_text())


def test_site_ls_shows_the_tree(feds):
    relayed = feds
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sites = {s["name"]: s for s in relayed.flctl_json("site", "ls")}
        if len(sites) == 8 and all(s["online"] for s in sites.values()):
            break
        time.sleep(0.5)
    assert {name: s["parent"] or "" for name, s in sites.items()} == {
        "relay-eu": "", "relay-us": "", **TREE}, sites
    assert all(s["online"] for s in sites.values()), sites
    shown = relayed.flctl("site", "ls")
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    de = next(i for i, line in enumerate(lines) if "relay-de" in line)
    assert "site-5" in lines[de + 1] and lines[de + 1].index("site-5") > lines[de].index("relay-de")


def test_fedavg_through_relays_equals_the_flat_job(feds, tmp_path):
    """Two rounds over sites 1-4 (through relay-eu and relay-us) and one round over all five (site-5 below
    relay-de, below relay-eu): the final models equal the same jobs' run flat (`flctl simulate`), element for
    element, and the means worked out here; the server ran each job on its relays only."""
    relayed = feds
    for name, sites, rounds in (("four", ["site-1", "site-2", "site-3", "site-4"], 2), ("all", None, 1)):
        through, shown = run_job(relayed, job(tmp_path / "relayed", name, sites, rounds), tmp_path / f"r-{name}")
        direct = flat_job(job(tmp_path / "flat", name, sites, rounds), sites, tmp_path / "flat-runs")
        assert sorted(through) == ["b", "w"]
        for tensor in ("w", "b"):
            assert through[tensor].dtype == direct[tensor].dtype
            np.testing.assert_array_equal(through[tensor], direct[tensor])
        value = expected(sites or sorted(BUMP), rounds)
        np.testing.assert_array_equal(through["w"], np.full(1000, value, np.float32))
        assert sorted(s["name"] for s in shown["sites"]) == ["relay-eu", "relay-us"], shown
        if name == "all":  # site-5's lines came up through relay-de and relay-eu, named by each
            logs = relayed.flctl("job", "logs", shown["id"]).stdout
            assert "relay-eu" in logs and "[relay-de] [site-5]" in logs, logs


def test_a_quantized_job_through_relays_equals_the_flat_job(feds, tmp_path):
    """`transfer: {quantize: int8}` over sites 1-4 for two rounds: each relay reads its sites' int8 answers as the
    server would (made whole), adds them in float32 and sends its one answer up; the final model equals the same job
    run flat (`flctl simulate`, every answer made whole at the server) within float32's rounding of the sums, and
    the means worked out here within int8's bound."""
    relayed = feds
    sites = ["site-1", "site-2", "site-3", "site-4"]
    made = []
    for where in ("relayed", "flat"):
        folder = job(tmp_path / where, "int8", sites, 2)
        (folder / "job.yml").write_text((folder / "job.yml").read_text() + "transfer: {quantize: int8}\n")
        made.append(folder)
    through, shown = run_job(relayed, made[0], tmp_path / "r-int8")
    direct = flat_job(made[1], sites, tmp_path / "flat-runs")
    assert sorted(through) == ["b", "w"]
    for tensor in ("w", "b"):
        assert through[tensor].dtype == direct[tensor].dtype
        np.testing.assert_allclose(through[tensor], direct[tensor], rtol=1e-6)
    value = expected(sites, 2)
    np.testing.assert_allclose(through["w"], np.full(1000, value, np.float32), rtol=2 / 127)
    assert sorted(s["name"] for s in shown["sites"]) == ["relay-eu", "relay-us"], shown


def test_a_workflow_relays_cannot_carry_is_refused_at_submit(feds, tmp_path):
    """A cyclic job naming a site under a relay: refused at submit (exit 2), saying why; nothing is stored."""
    relayed = feds
    folder = tmp_path / "cyc"
    (folder / "app").mkdir(parents=True)
    (folder / "job.yml").write_text("api_version: 1\nname: cyc\nworkflow: {type: cyclic, args: {rounds: 1}}\n"
                                    "sites: [site-1, site-3]\n")
    (folder / "app" / "train.py").write_text(SCRIPT.format(bump=BUMP, examples=EXAMPLES))
    before = relayed.flctl_json("job", "ls")
    out = relayed.flctl("job", "submit", folder, "--json")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "site-1 is reached through a relay, and workflow cyclic needs each site's own answer" in out.stderr
    assert "Traceback" not in out.stderr
    assert relayed.flctl_json("job", "ls") == before


def test_sites_reconnect_when_their_relay_returns(feds, tmp_path):
    """relay-us stops: it and site-3 show offline, site-4 (failover: server) connects to the server itself and a
    job naming it runs there; relay-us started again, both sites go back to it by themselves."""
    relayed = feds

    def states() -> dict[str, tuple[bool, str]]:
        return {s["name"]: (s["online"], s["parent"] or "") for s in relayed.flctl_json("site", "ls")}

    def wait_for(wanted: dict[str, tuple[bool, str]], timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = states()
            if all(now.get(name) == want for name, want in wanted.items()):
                return
            time.sleep(0.5)
        raise AssertionError(f"wanted {wanted}, have {states()}\n{relayed.logs()}")

    relayed.stop("relay-us")
    wait_for({"relay-us": (False, ""), "site-3": (False, "relay-us"), "site-1": (True, "relay-eu"),
              FAILOVER: (True, "")})
    final, shown = run_job(relayed, job(tmp_path, "direct", [FAILOVER], 1), tmp_path / "direct-out")
    assert [s["name"] for s in shown["sites"]] == [FAILOVER]
    np.testing.assert_array_equal(final["w"], np.full(1000, BUMP[FAILOVER], np.float32))
    relayed.start("relay-us")
    wait_for({"relay-us": (True, ""), "site-3": (True, "relay-us"), "site-4": (True, "relay-us")})


def test_a_stop_between_registering_and_the_command_stream_ends_the_relay(tmp_path):
    """A relay told to stop after registering with its parent but before opening its command stream (a signal in
    that window) ends: its session cancels the call stop() could not see yet, instead of waiting on the stream."""
    import threading

    from flctl.node.config.kit import load_kit
    from flctl.node.relay.daemon import Relay

    fed = make(tmp_path, relays=True)
    fed.start("localhost")
    relay = Relay(load_kit(fed.kit("relay-eu"), verify=True), tmp_path / "relay-eu-workspace")
    reached = []

    class StopOnConnect(threading.Event):
        def set(self) -> None:  # registered, the command stream not yet opened: the signal lands here
            reached.append(True)
            relay.stop()
            super().set()

    relay.connected = StopOnConnect()
    try:
        relay.start()
        run = threading.Thread(target=relay.run, daemon=True)
        run.start()
        run.join(60)
        assert reached, fed.logs()
        assert not run.is_alive(), "the relay kept waiting on its command stream after stop()"
    finally:
        fed.stop_all()
