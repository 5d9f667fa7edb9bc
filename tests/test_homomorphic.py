"""Homomorphic encryption (issue 23): provisioning's CKKS context, the server adding ciphertexts it cannot read, the
sites decrypting; a real federation (server and two sites from `flctl node start`) runs the same job in clear and
with `encryption: he`, and the final models agree within CKKS precision."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.errors import JobError
from flctl.node.jobs.job_spec import load_job
from flctl.node.secagg.he import CiphertextSum, CkksKeys
from flctl.node.secagg.payload import SecAggError
from flctl.provisioner.build import provision
from flctl.provisioner.he_context import CLIENT_CONTEXT, SERVER_CONTEXT, make_contexts
from flctl.provisioner.project import HomomorphicEncryptionSpec
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from .federation import Federation, free_port, project_text, running
from .job_folders import workflow_job

ts = pytest.importorskip("tenseal", reason="needs the privacy extra: bash scripts/setup.sh --all")

TOLERANCE = 1e-3
"""The largest absolute difference allowed between the HE run's final model and the plain run's (README)."""

# A small CNN's tensors (conv 8x1x3x3, conv 16x8x3x3, fc 10x400 and their biases: 4,314 values, two ciphertexts),
# trained by a deterministic step that depends on the site and its data size.
TRAIN = """\
import numpy as np
import flctl.client as fl

SHAPES = {"conv1.weight": (8, 1, 3, 3), "conv1.bias": (8,), "conv2.weight": (16, 8, 3, 3), "conv2.bias": (16,),
          "fc.weight": (10, 400), "fc.bias": (10,)}
fl.init()
site = fl.get_site_name()
n = 100 if site == "site-1" else 300
rng = np.random.default_rng(int(site[-1]))
target = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
while fl.running():
    model = fl.receive()
    if model is None:
        break
    params = model.params or {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    new = {k: (params[k] + 0.5 * np.tanh(target[k] - params[k])).astype(np.float32) for k in SHAPES}
    if fl.is_evaluate():
        fl.send(fl.Model(metrics={"distance": float(sum(np.abs(target[k] - params[k]).sum() for k in SHAPES))}))
    elif model.round == 1:  # a diff once: the site adds it to the model it was given before encrypting
        fl.send(fl.Model(params={k: new[k] - params[k] for k in SHAPES}, params_type="diff", num_examples=n))
    else:
        fl.send(fl.Model(params=new, num_examples=n, metrics={"loss": 1.0}))
"""


def he_federation(root: Path, sites: int = 2, he: bool = True, port: int | None = None,
                  he_spec: str = "{}") -> Federation:
    port = port or free_port()
    text = project_text("hetest", port, sites) + (f"homomorphic_encryption: {he_spec}\n" if he else "")
    (root / "project.yml").write_text(text)
    result = provision(project_from_document(parse_yaml(text, "project.yml")).project, root / "ws")
    return Federation(root, result.prod_dir, port, [f"site-{i}" for i in range(1, sites + 1)])


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running(he_federation(tmp_path_factory.mktemp("he"))) as federation:
        yield federation


def run_job(fed: Federation, job: Path, timeout: float = 120) -> tuple[str, dict]:
    out = fed.flctl("job", "submit", job, "--json")
    assert out.returncode == 0, out.stderr
    job_id = str(json.loads(out.stdout)["id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = fed.flctl_json("job", "show", job_id)
        if shown["status"] in ("FINISHED", "FAILED", "ABORTED"):
            return job_id, shown
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end; logs: {fed.logs()}")


def secret_keys_in(folder: Path) -> list[Path]:
    """Every file under `folder` that TenSEAL reads as a context holding a secret key, or that holds the bytes of a
    site's secret context."""
    found = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name == CLIENT_CONTEXT:
            found.append(path)
            continue
        try:
            context = ts.context_from(data)
        except Exception:  # noqa: BLE001 - not a context
            continue
        if context.is_private():
            found.append(path)
    return found


def test_provisioning_puts_the_public_context_in_the_server_kit_and_the_secret_one_in_sites_only(tmp_path):
    """The server's kit holds a public context; each site's the same context with its secret key (signed, 0600);
    provisioning again reuses it."""
    fed = he_federation(tmp_path)
    server = fed.kit("localhost") / "startup"
    public = ts.context_from((server / SERVER_CONTEXT).read_bytes())
    assert public.is_public() and not public.has_secret_key()
    assert not (server / CLIENT_CONTEXT).exists()
    ids = set()
    for site in fed.sites:
        path = fed.kit(site) / "startup" / CLIENT_CONTEXT
        assert path.stat().st_mode & 0o777 == 0o600
        assert json.loads((path.parent / "signature.json").read_text())["files"][CLIENT_CONTEXT]
        ids.add(CkksKeys(path.read_bytes(), site).context_id)
    assert ids == {CkksKeys((server / SERVER_CONTEXT).read_bytes(), "server").context_id}
    assert secret_keys_in(fed.kit("localhost")) == []
    assert not (fed.kit(fed.admin) / "startup" / CLIENT_CONTEXT).exists()
    again = provision(project_from_document(parse_yaml((tmp_path / "project.yml").read_text(), "p")).project,
                      tmp_path / "ws")
    assert (again.prod_dir / "site-1" / "startup" / CLIENT_CONTEXT).read_bytes() == \
        (fed.kit("site-1") / "startup" / CLIENT_CONTEXT).read_bytes()


def test_ckks_sum_matches_numpy_and_refuses_another_context():
    """Encrypted weighted models added by the public context decrypt to numpy's weighted mean (1e-6); a payload of
    another context is refused naming the field, and the public context cannot decrypt."""
    made = make_contexts(HomomorphicEncryptionSpec())
    site, server = CkksKeys(made.secret, "site"), CkksKeys(made.public, "server")
    rng = np.random.default_rng(0)
    models = [{"w": rng.normal(size=(50, 100)).astype(np.float32), "steps": np.array(i, np.int64)} for i in range(3)]
    weights = [10, 20, 70]
    total = CiphertextSum(server)
    for model, weight in zip(models, weights, strict=True):
        total.add(site.encrypt(model, weight), weight, "site")
    mean = site.decrypt(total.result(), "the sum's")
    for name in models[0]:
        expected = sum(m[name].astype(np.float64) * w for m, w in zip(models, weights, strict=True)) / 100
        if models[0][name].dtype.kind == "i":  # integers are rounded, as WeightedSum rounds them
            expected = np.rint(expected)
        np.testing.assert_allclose(mean[name], expected.astype(models[0][name].dtype), atol=1e-6)
    other = CkksKeys(make_contexts(HomomorphicEncryptionSpec()).secret, "other")
    with pytest.raises(SecAggError, match="field 'context'"):
        total.add(other.encrypt(models[0], 1), 1, "site-x")
    with pytest.raises(SecAggError, match="no secret key"):
        server.decrypt(total.result(), "the sum's")


def test_he_job_equals_the_plain_job_and_the_server_never_holds_the_key(fed, tmp_path):
    """The same job in clear and with encryption: he (a diff round and evaluations included): each site's decrypted
    final model equals the plain run's within 1e-3; the server's models are ciphertexts; no secret key is anywhere in
    the server's kit or workspace."""
    args = {"rounds": 3, "round_timeout_s": 60, "evaluate_every": 3}
    plain = workflow_job(tmp_path, "plain", "fedavg", args, TRAIN)
    secret = workflow_job(tmp_path, "secret", "fedavg", {**args, "encryption": "he"}, TRAIN)
    plain_id, shown = run_job(fed, plain)
    assert shown["status"] == "FINISHED", shown
    he_id, shown = run_job(fed, secret)
    assert shown["status"] == "FINISHED", str(shown) + fed.logs()
    server_ws = fed.kit("localhost") / "workspace"
    expected = load_file(server_ws / "jobs" / plain_id / "models" / "final.safetensors")
    stored = load_file(server_ws / "jobs" / he_id / "models" / "final.safetensors")
    assert "@he/ciphertexts" in stored and not set(expected) & set(stored), "the server holds ciphertexts only"
    for site in fed.sites:
        final = load_file(fed.kit(site) / "workspace" / "jobs" / he_id / "models" / "final.safetensors")
        assert sorted(final) == sorted(expected)
        for name in expected:
            assert final[name].dtype == expected[name].dtype
            np.testing.assert_allclose(final[name], expected[name], atol=TOLERANCE, rtol=0)
            assert np.abs(final[name] - expected[name]).max() < 1e-5  # what CKKS's 40-bit scale gives here
    log = (server_ws / "jobs" / he_id / "logs" / "server.log").read_text()
    assert "round 3 evaluation: 2 of 2 sites, val_distance" in log, "the sites evaluated the decrypted model"
    assert secret_keys_in(fed.kit("localhost")) == []


def test_a_site_without_the_context_refuses_and_nothing_goes_out_in_clear(tmp_path):
    """A site still on its kit from before the project asked for HE (no client_context.tenseal) refuses the job,
    naming the file and job.yml's field; the job fails with that reason (min_sites 2), and no model reaches the
    server: it saved none."""
    old = he_federation(tmp_path, he=False)
    fed = he_federation(tmp_path, port=old.port)  # the same project provisioned again, now with HE
    assert fed.prod != old.prod
    shutil.rmtree(fed.kit("site-2"))
    shutil.copytree(old.kit("site-2"), fed.kit("site-2"))
    with running(fed):
        job = workflow_job(tmp_path, "secret", "fedavg", {"rounds": 1, "round_timeout_s": 30, "encryption": "he"},
                           TRAIN)
        job_id, shown = run_job(fed, job)
    assert shown["status"] == "FAILED"
    text = json.dumps(shown)
    assert "site-2 refuses to run the job" in text, text
    assert "startup/client_context.tenseal" in text and "workflow.args.encryption" in text
    assert not list((fed.kit("localhost") / "workspace" / "jobs" / job_id).glob("models/*.safetensors"))


def test_ciphertexts_of_another_context_are_refused_naming_the_site_and_field(tmp_path):
    """site-2 still runs its kit from before the project's HE parameters changed (another context): the server refuses
    its ciphertexts naming site-2 and the header field 'context', uses nothing of them, and the job fails (min_sites
    2) with that reason."""
    old = he_federation(tmp_path)
    fed = he_federation(tmp_path, port=old.port, he_spec="{scale_bits: 30}")  # a new context: new kits for all
    shutil.rmtree(fed.kit("site-2"))
    shutil.copytree(old.kit("site-2"), fed.kit("site-2"))
    with running(fed):
        job = workflow_job(tmp_path, "secret", "fedavg", {"rounds": 1, "round_timeout_s": 30, "encryption": "he"},
                           TRAIN)
        job_id, shown = run_job(fed, job)
    assert shown["status"] == "FAILED"
    assert "site-2's ciphertexts are of another HE context (field 'context'" in shown["error"], shown["error"]
    assert "startup/server_context.tenseal" in shown["error"]
    assert not list((fed.kit("localhost") / "workspace" / "jobs" / job_id).glob("models/*.safetensors"))


def test_encryption_is_refused_where_it_cannot_work(tmp_path):
    """At submit: he with fedopt (its server step needs the plain model), with cross_site_eval, or with masking too."""
    cases = [("fedopt", {"rounds": 1, "encryption": "he"}, "fedopt.*does not fit|does not fit"),
             ("fedavg", {"rounds": 1, "encryption": "he", "cross_site_eval": True}, "cross_site_eval"),
             ("fedavg", {"rounds": 1, "encryption": "he", "secure_aggregation": "masking"}, "not both"),
             ("scaffold", {"rounds": 1, "secure_aggregation": "masking"}, "does not fit")]
    for i, (workflow, args, pattern) in enumerate(cases):
        folder = workflow_job(tmp_path, f"job{i}", workflow, args, TRAIN)
        with pytest.raises(JobError, match=pattern) as caught:
            load_job(folder)
        assert "workflow.args" in str(caught.value)


def test_the_example_job_and_a_local_federation_are_ready_for_he():
    """playbooks/jobs/hello-pt/he.yml is hello-pt with encryption: he, and `flctl poc prepare`'s project.yml asks for
    a CKKS context when TenSEAL is installed."""
    from flctl.cloud.local_plan import project_yaml

    from .conftest import ROOT

    job = load_job(ROOT / "playbooks" / "jobs" / "hello-pt" / "he.yml")
    assert (job.spec.name, job.spec.workflow.type, job.args.secure_mode()) == ("hello-pt-he", "fedavg", "he")
    project = project_from_document(parse_yaml(project_yaml(["site-1", "site-2"], 8443), "project.yml")).project
    assert project.homomorphic_encryption == HomomorphicEncryptionSpec()


def test_encrypted_statistics_give_the_plain_totals_and_no_site_s_own(tmp_path):
    """`flctl simulate playbooks/jobs/statistics/encrypted.yml`: the global count, sum and mean equal the plain
    job's (same data) within CKKS precision; the report holds no site's own figures."""
    import subprocess

    from .conftest import ROOT
    from .federation import FLCTL

    source = ROOT / "playbooks" / "jobs" / "statistics"
    plain = tmp_path / "plain"
    shutil.copytree(source / "app", plain / "app")
    (plain / "job.yml").write_text((source / "encrypted.yml").read_text().replace("    encryption: he\n", "")
                                   .replace("name: statistics-encrypted", "name: plain"))
    reports = {}
    for name, job in (("plain", plain), ("statistics-encrypted", source / "encrypted.yml")):
        out = subprocess.run([FLCTL, "simulate", str(job), "-n", "3", "-w", str(tmp_path / "ws")], check=False,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        reports[name] = json.loads((tmp_path / "ws" / name / "reports" / "statistics.json").read_text())
    encrypted, expected = reports["statistics-encrypted"], reports["plain"]
    assert set(encrypted["results"]) == {"global"} and set(expected["results"]) == {"global", "site-1", "site-2",
                                                                                     "site-3"}
    for feature, figures in expected["results"]["global"].items():
        got = encrypted["results"]["global"][feature]
        assert got["count"] == figures["count"]
        assert got["sum"] == pytest.approx(figures["sum"], rel=1e-6)
        assert got["mean"] == pytest.approx(figures["mean"], rel=1e-6)


def test_encrypted_statistics_take_count_sum_and_mean_of_named_features_only(tmp_path):
    """At submit: encryption: he with a variance, or without features named, is refused naming workflow.args."""
    for i, (args, pattern) in enumerate([
            ({"statistics": {"count": {}, "variance": {}}, "features": ["age"]}, "variance cannot be made"),
            ({"statistics": {"count": {}}}, "needs the features named")]):
        folder = workflow_job(tmp_path, f"stats{i}", "statistics", {**args, "encryption": "he"}, TRAIN)
        with pytest.raises(JobError, match=pattern) as caught:
            load_job(folder)
        assert "workflow.args" in str(caught.value)
