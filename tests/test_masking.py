"""Secure aggregation by masking (issue 24): the protocol's steps against numpy, dropouts, refusals; and on a real
federation, a fedavg job with secure_aggregation: masking surviving a site killed after its upload."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flctl.node.secagg.masking import SCALE_BITS, Advert, Aggregate, MaskingSite, dequantize, quantize
from flctl.node.secagg.payload import SecAggError
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from .federation import project_text

QUANTIZATION = 2.0 ** -(SCALE_BITS + 1)
"""How far the masked average may be from the float64 weighted mean (README)."""


def site_keys(root: Path, sites: int) -> tuple[dict[str, tuple[bytes, bytes]], bytes]:
    """Provisioned kits: each site's (key, certificate) PEM and the CA's."""
    text = project_text("masktest", 8443, sites)
    prod = provision(project_from_document(parse_yaml(text, "project.yml")).project, root).prod_dir
    keys = {f"site-{i}": ((prod / f"site-{i}" / "startup" / "site.key").read_bytes(),
                          (prod / f"site-{i}" / "startup" / "site.crt").read_bytes()) for i in range(1, sites + 1)}
    return keys, (prod / "site-1" / "startup" / "ca.crt").read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, tuple[bytes, bytes]], bytes]:
    return site_keys(tmp_path_factory.mktemp("pki"), 5)


def run_round(pki, updates: dict[str, np.ndarray], weights: dict[str, float], threshold: int,
              drop_before_upload: tuple[str, ...] = (), drop_after_upload: tuple[str, ...] = (),
              tamper: Callable[[dict[str, dict[str, bytes]]], None] | None = None) -> tuple[np.ndarray, Aggregate]:
    """One round of the protocol in process: every site advertises and shares; `drop_before_upload` sites stop
    there, `drop_after_upload` sites upload and never reveal."""
    keys, ca = pki
    sites = {name: MaskingSite("job-1", 3, name, *keys[name], ca) for name in updates}
    adverts = {name: site.advertise() for name, site in sites.items()}
    sealed = {name: site.share(adverts, threshold) for name, site in sites.items()}
    if tamper:
        tamper(sealed)
    aggregate = Aggregate("job-1", 3, adverts, threshold)
    for name, site in sites.items():
        site.receive({sender: shares[name] for sender, shares in sealed.items() if name in shares})
        if name not in drop_before_upload:
            aggregate.add(name, site.masked(quantize(updates[name], weights[name])), weights[name])
    reveals = {name: site.reveal(sorted(aggregate.uploaded), aggregate.dropped()) for name, site in sites.items()
               if name in aggregate.uploaded and name not in drop_after_upload}
    return dequantize(aggregate.total(reveals), aggregate.weight), aggregate


def updates_of(count: int, size: int = 10_000) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    rng = np.random.default_rng(7)
    names = [f"site-{i}" for i in range(1, count + 1)]
    return ({n: rng.normal(scale=2.0, size=size) for n in names}, {n: float(10 * (i + 1)) for i, n in enumerate(names)})


def weighted_mean(updates: dict[str, np.ndarray], weights: dict[str, float], names: list[str]) -> np.ndarray:
    return sum(updates[n] * weights[n] for n in names) / sum(weights[n] for n in names)


def test_the_masked_sum_is_fedavg_within_the_quantization_error(pki):
    """Five sites, threshold 3: the unmasked average equals numpy's weighted mean within 2^-25."""
    updates, weights = updates_of(5)
    mean, _ = run_round(pki, updates, weights, threshold=3)
    assert np.abs(mean - weighted_mean(updates, weights, sorted(updates))).max() <= QUANTIZATION


def test_a_single_masked_update_looks_like_noise(pki):
    """A site's upload is uncorrelated with its update (|r| < 0.02 over 100,000 values, where chance gives about
    0.003) and its top bits are uniform; without the masks the same statistic would be 1."""
    keys, ca = pki
    updates, weights = updates_of(3, size=100_000)
    sites = {n: MaskingSite("job-1", 0, n, *keys[n], ca) for n in updates}
    adverts = {n: s.advertise() for n, s in sites.items()}
    sealed = {n: s.share(adverts, 2) for n, s in sites.items()}
    sites["site-1"].receive({sender: shares["site-1"] for sender, shares in sealed.items() if "site-1" in shares})
    quantized = quantize(updates["site-1"], weights["site-1"])
    upload = sites["site-1"].masked(quantized)
    r = np.corrcoef(upload.view(np.int64).astype(np.float64), quantized.view(np.int64).astype(np.float64))[0, 1]
    assert abs(r) < 0.02
    top = np.bincount((upload >> np.uint64(60)).astype(np.int64), minlength=16)
    assert top.min() > 100_000 / 16 * 0.9 and top.max() < 100_000 / 16 * 1.1


def test_the_round_survives_sites_dropping_before_and_after_their_upload(pki):
    """Threshold 3 of 5: one site drops before uploading (its pairwise masks are removed through its key's shares)
    and one after (its self mask through the others' shares); the average is that of the four that uploaded."""
    updates, weights = updates_of(5)
    mean, aggregate = run_round(pki, updates, weights, threshold=3, drop_before_upload=("site-2",),
                                drop_after_upload=("site-5",))
    assert aggregate.uploaded == ["site-1", "site-3", "site-4", "site-5"]
    expected = weighted_mean(updates, weights, aggregate.uploaded)
    assert np.abs(mean - expected).max() <= QUANTIZATION


def test_fewer_survivors_than_the_threshold_fail_with_a_reason_never_a_model(pki):
    """Threshold 4 of 5 and two sites gone after their upload: the sum cannot be unmasked, and says why; a site asked
    to reveal with fewer survivors than the threshold refuses."""
    updates, weights = updates_of(5)
    with pytest.raises(SecAggError, match="3 sites revealed their shares, fewer than the threshold 4"):
        run_round(pki, updates, weights, threshold=4, drop_after_upload=("site-4", "site-5"))
    with pytest.raises(SecAggError, match="fewer than the threshold 4: nothing is revealed"):
        run_round(pki, updates, weights, threshold=4, drop_before_upload=("site-4", "site-5"))


def test_keys_the_server_swapped_are_refused_naming_the_site(pki):
    """The server relays site-2's keys with its own public keys in them: every site refuses to share, naming site-2;
    a certificate of another site, or a threshold of half the sites, is refused too."""
    keys, ca = pki
    sites = {n: MaskingSite("job-1", 0, n, *keys[n], ca) for n in ("site-1", "site-2", "site-3")}
    adverts = {n: s.advertise() for n, s in sites.items()}
    forged = MaskingSite("job-1", 0, "site-2", *keys["site-3"], ca).advertise()  # signed by site-3's key
    swapped = {**adverts, "site-2": Advert("site-2", os.urandom(32), adverts["site-2"].s_pk,
                                           adverts["site-2"].signature, adverts["site-2"].cert_pem)}
    with pytest.raises(SecAggError, match="not signed by site-2's certificate"):
        sites["site-1"].share(swapped, 2)
    with pytest.raises(SecAggError, match=r"certificate of \['site-3'\]"):
        sites["site-1"].share({**adverts, "site-2": forged}, 2)
    with pytest.raises(SecAggError, match="not more than half"):
        sites["site-1"].share({n: adverts[n] for n in ("site-1", "site-2")}, 1)


def test_a_share_for_the_wrong_round_is_left_out_and_corrupts_nothing(pki):
    """site-3's shares for site-1 are replaced by shares it sealed in another round: site-1 leaves them out (they
    do not open for this round), reveals nothing of site-3 it does not hold, and the average is still exact."""
    keys, ca = pki
    other = {n: MaskingSite("job-1", 2, n, *keys[n], ca) for n in ("site-1", "site-3")}
    old_adverts = {n: s.advertise() for n, s in other.items()}
    replayed = other["site-3"].share(old_adverts, 2)["site-1"]

    def replay(sealed: dict[str, dict[str, bytes]]) -> None:
        sealed["site-3"]["site-1"] = replayed

    updates, weights = updates_of(4)
    mean, _ = run_round(pki, updates, weights, threshold=3, tamper=replay)
    assert np.abs(mean - weighted_mean(updates, weights, sorted(updates))).max() <= QUANTIZATION


# ------------------------------------------------------------------------------------------- on a real federation
MASK_TRAIN = """\
import os, time
import numpy as np
import flctl.client as fl

SHAPES = {"conv.weight": (8, 1, 3, 3), "fc.weight": (10, 72), "fc.bias": (10,)}
fl.init()
site = fl.get_site_name()
rng = np.random.default_rng(int(site[-1]))
target = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
n = 50 * int(site[-1])
while fl.running():
    model = fl.receive()
    if model is None:
        break
    params = model.params or {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    new = {k: (params[k] + 0.5 * np.tanh(target[k] - params[k])).astype(np.float32) for k in SHAPES}
    if model.round == 1 and os.environ.get("SLOW_SITE") == site:
        # The others upload first: held until the test has killed one of them and the server knows it is gone.
        while os.path.exists(os.environ["HOLD"]):
            time.sleep(0.05)
    fl.send(fl.Model(params=new, num_examples=n, metrics={"loss": 1.0}))
    open(f"uploaded-{model.round}", "w").close()
"""


def masking_job(root: Path, name: str, args: dict[str, object], slow_site: str = "site-1") -> Path:
    """A job whose `slow_site` uploads its round-2 update only once the file `root/hold-NAME` is gone."""
    import json

    folder = root / name
    (folder / "app").mkdir(parents=True)
    hold = root / f"hold-{name}"
    if slow_site:
        hold.touch()
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {json.dumps(args)}}}\nmin_sites: 2\n"
        f"app: {{command: [python, train.py], env: {{SLOW_SITE: {slow_site or 'none'}, HOLD: '{hold}'}}}}\n")
    (folder / "app" / "train.py").write_text(MASK_TRAIN)
    return folder


def submit(fed, job: Path) -> str:
    import json

    out = fed.flctl("job", "submit", job, "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["id"])


def wait_end(fed, job_id: str, timeout: float = 120) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = fed.flctl_json("job", "show", job_id)
        if shown["status"] in ("FINISHED", "FAILED", "ABORTED"):
            return dict(shown)
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end; logs: {fed.logs()}")


def kill_after_upload(fed, job_id: str, site: str, round_no: int, hold: Path) -> None:
    """Kill `site` (its daemon, job process and script) once its round `round_no` upload is on its way; once the
    job has noted it failed, remove `hold` (the slow site uploads, and the unmasking step starts)."""
    import signal
    import time

    marker = fed.kit(site) / "workspace" / "jobs" / job_id / "job" / "app" / f"uploaded-{round_no}"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the site never uploaded: " + fed.logs()
        time.sleep(0.1)
    time.sleep(1.0)  # its job process masks and sends the upload: a small model, well under a second
    fed.stop(site, signal.SIGKILL)
    # Until the job knows (its site_failed event), the unmasking step would ask the killed site too, and two others'
    # shares may end the step before that site's failure is noted.
    from flctl.node.admin.admin_client import AdminClient

    with AdminClient.from_kit(fed.admin_kit) as admin:
        failed = next((e for e in admin.watch(job_id) if e.kind == "site_failed" and site in e.message), None)
    assert failed is not None, f"the job ended without noting {site}'s failure: " + fed.logs()
    hold.unlink()


def test_masking_on_a_federation_equals_fedavg_and_survives_a_site_killed_after_upload(tmp_path):
    """Three sites: the masked job's final model equals the plain job's (same script) within 1e-6, though site-3 is
    killed after its round-1 upload (threshold 2: the others reveal its self mask); with threshold 3 the same kill
    fails the job, saying why, and no final model is saved."""
    from safetensors.numpy import load_file

    from .federation import make_federation, running

    fed = make_federation(tmp_path, sites=3)
    with running(fed):
        # The reference: no slow site (its hold is only the window for killing a masked job's site).
        plain_id = submit(fed, masking_job(tmp_path, "plain", {"rounds": 2, "round_timeout_s": 30}, slow_site=""))
        assert wait_end(fed, plain_id)["status"] == "FINISHED"
        masked_id = submit(fed, masking_job(tmp_path, "masked", {"rounds": 2, "round_timeout_s": 30,
                                                                 "secure_aggregation": "masking"}))
        kill_after_upload(fed, masked_id, "site-3", 1, tmp_path / "hold-masked")
        shown = wait_end(fed, masked_id)
        assert shown["status"] == "FINISHED", str(shown) + fed.logs()
        server_jobs = fed.kit("localhost") / "workspace" / "jobs"
        expected = load_file(server_jobs / plain_id / "models" / "final.safetensors")
        final = load_file(server_jobs / masked_id / "models" / "final.safetensors")
        assert sorted(final) == sorted(expected)
        for name in expected:
            np.testing.assert_allclose(final[name], expected[name], atol=1e-6, rtol=0)
        log = (server_jobs / masked_id / "logs" / "server.log").read_text()
        assert "round 2 of 2: 3 of 3 sites answered" in log and "round 2: site-3 did not unmask" in log

        fed.start("site-3")
        fed.wait_online(fed.sites)
        strict_id = submit(fed, masking_job(tmp_path, "strict", {"rounds": 2, "round_timeout_s": 30,
                                                                 "secure_aggregation": "masking",
                                                                 "masking_threshold": 3}))
        kill_after_upload(fed, strict_id, "site-3", 1, tmp_path / "hold-strict")
        shown = wait_end(fed, strict_id)
    assert shown["status"] == "FAILED"
    assert "round 2: 2 sites revealed their shares, fewer than the threshold 3" in shown["error"], shown["error"]
    assert not (server_jobs / strict_id / "models" / "final.safetensors").exists()
    assert not (server_jobs / strict_id / "models" / "round-1.safetensors").exists()


def test_masking_arguments_are_checked_at_submit(tmp_path):
    """fedopt takes masking; cross_site_eval with masking, a threshold of 1 or a threshold without masking are refused
    naming workflow.args."""
    from flctl.node.errors import JobError
    from flctl.node.jobs.job_spec import load_job

    assert load_job(masking_job(tmp_path, "ok", {"rounds": 1, "secure_aggregation": "masking"})).args is not None
    fedopt = masking_job(tmp_path, "opt", {"rounds": 1, "secure_aggregation": "masking"})
    (fedopt / "job.yml").write_text((fedopt / "job.yml").read_text().replace("type: fedavg", "type: fedopt"))
    assert load_job(fedopt).spec.workflow.type == "fedopt"
    for i, (args, pattern) in enumerate([
            ({"secure_aggregation": "masking", "cross_site_eval": True}, "cross_site_eval asks every site"),
            ({"secure_aggregation": "masking", "masking_threshold": 1}, "unmask a site alone"),
            ({"masking_threshold": 3}, "masking_threshold is for secure_aggregation: masking")]):
        with pytest.raises(JobError, match=pattern) as caught:
            load_job(masking_job(tmp_path, f"bad{i}", {"rounds": 1, **args}))
        assert "workflow.args" in str(caught.value)


def test_the_example_job_asks_for_masking():
    """playbooks/jobs/hello-pt/masking.yml is hello-pt with secure_aggregation: masking."""
    from flctl.node.jobs.job_spec import load_job

    from .conftest import ROOT

    job = load_job(ROOT / "playbooks" / "jobs" / "hello-pt" / "masking.yml")
    assert (job.spec.name, job.args.secure_mode()) == ("hello-pt-masking", "masking")


@pytest.mark.parametrize(("workflow", "args"), [("fedavg", {"secure_aggregation": "masking"}),
                                                ("fedopt", {"secure_aggregation": "masking", "optimizer": "adam"}),
                                                ("fedavg", {"encryption": "he"})])
def test_flctl_simulate_runs_secure_aggregation_with_keys_of_its_own(tmp_path, workflow, args):
    """`flctl simulate` with masking (a CA and site certificates made for the simulation; fedavg, and fedopt whose
    server step takes the unmasked average) or HE (a CKKS context made for it) gives the plain simulation's final
    model (HE: each simulated site's, the server holding ciphertexts)."""
    import subprocess

    from safetensors.numpy import load_file

    if "encryption" in args:
        pytest.importorskip("tenseal", reason="needs the privacy extra: bash scripts/setup.sh --all")
    from .federation import FLCTL

    def simulate(name: str, extra: dict[str, object]) -> Path:
        job = masking_job(tmp_path, name, {"rounds": 2, "round_timeout_s": 30, **extra}, slow_site="")
        (job / "job.yml").write_text((job / "job.yml").read_text().replace("type: fedavg", f"type: {workflow}"))
        out = subprocess.run([FLCTL, "simulate", str(job), "-n", "3", "-w", str(tmp_path / "ws")],
                             check=False, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return tmp_path / "ws" / name

    plain = {k: v for k, v in args.items() if k not in ("secure_aggregation", "encryption")}
    expected = load_file(simulate("plain", plain) / "models" / "final.safetensors")
    secured = simulate("secured", args)
    finals = [secured / "sites" / f"site-{i}" / "models" / "final.safetensors" for i in (1, 2, 3)] \
        if "encryption" in args else [secured / "models" / "final.safetensors"]
    for path in finals:
        final = load_file(path)
        for name in expected:
            np.testing.assert_allclose(final[name], expected[name], atol=1e-5, rtol=0)


class StepFederation:
    """Answers the masking key steps from real sites in process; `shares_round` makes a site answer the shares step
    for another round; `padding` makes every sealed share that much longer."""

    job_id = "job-1"

    def __init__(self, pki, names: list[str], shares_round: dict[str, int] | None = None, padding: int = 0) -> None:
        keys, ca = pki
        self.sites_ = {n: MaskingSite("job-1", 0, n, *keys[n], ca) for n in names}
        self.shares_round = shares_round or {}
        self.padding = padding
        self.logged: list[str] = []

    def kit_file(self, name: str) -> bytes:
        return b"a CA"

    def log(self, message: str) -> None:
        self.logged.append(message)

    def send(self, task, sites, timeout_s):
        from flctl.node.jobs.tasks import TaskResult
        from flctl.node.secagg.mask_crypto import b64

        step = task.meta["step"]
        for name in sites:
            site = self.sites_[name]
            if step == "mask_keys":
                site.round = task.meta["round"]
                yield TaskResult(name, {}, 0, {}, {"round": site.round, "advert": site.advertise().as_json()})
            else:
                adverts = {n: Advert.from_json(n, a) for n, a in task.meta["keys"].items()}
                made = site.share(adverts, task.meta["threshold"])
                sealed = {k: b64(v) + "A" * self.padding for k, v in made.items()}
                yield TaskResult(name, {}, 0, {}, {"round": self.shares_round.get(name, task.meta["round"]),
                                                   "shares": sealed})


def test_a_site_answering_the_shares_step_for_another_round_is_left_out(pki):
    """site-2 answers round 0's shares step as if for round 5: the server leaves it out of the round's participants
    (so no other site masks with it and nothing of it is ever revealed), saying why; the others go on."""
    from flctl.node.workflows.masking_round import MaskingRound

    fed = StepFederation(pki, ["site-1", "site-2", "site-3", "site-4"], shares_round={"site-2": 5})
    meta, sites = MaskingRound(fed, 2, 0).prepare(fed, 0, ["site-1", "site-2", "site-3", "site-4"], 10)
    assert sites == ["site-1", "site-3", "site-4"]
    assert meta["mask"]["participants"] == sites and "site-2" not in meta["mask"]["shares"]
    assert any("site-2 is left out: it sent mask shares for round 5" in line for line in fed.logged), fed.logged


def test_shares_too_big_for_one_task_fail_the_round_saying_so(pki):
    """When the sealed shares would not fit one training task, the round fails naming the size and the limit."""
    from flctl.node.workflows.base import WorkflowError
    from flctl.node.workflows.masking_round import MaskingRound

    fed = StepFederation(pki, ["site-1", "site-2", "site-3"], padding=2 * 2**20)
    with pytest.raises(WorkflowError, match=r"round 1: the sealed mask shares of 3 sites take .* MiB, more than one "
                                            r"training task carries \(6 MiB\)"):
        MaskingRound(fed, 2, 0).prepare(fed, 0, ["site-1", "site-2", "site-3"], 10)
