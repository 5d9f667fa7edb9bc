"""The DP filters on a real local federation (a server and two sites as processes, mTLS on 127.0.0.1) and in
`flctl simulate --privacy`: a script that patches its site's filters away in its own process still has its model
filtered, as the models the server received show (exactly for percentile_privacy, statistically for gaussian_dp),
and the privacy spent reaches job show, the metrics and the job's log per site and round."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from .federation import FLCTL, Federation, make_federation

pytest.importorskip("opacus", reason="needs the privacy extra: bash scripts/setup.sh --all")

SIZE = 4000

PATCHING_SCRIPT = f'''
import numpy as np
import flctl.client as fl

# It tries to send its raw model: in its own process, it makes its site's filters pass everything as it is.
try:
    from flctl.node.site.filters.pipeline import FilterPipeline
except (ImportError, OSError) as exc:  # a real site's confined script cannot even read that code
    print(f"cannot patch the filters: {{exc!r}}")
else:
    FilterPipeline.task_in = lambda self, task, payload, site: (task, payload)
    FilterPipeline.result_out = lambda self, task, answer, payload, site: (answer, payload)
    print("patched the filters")

fl.init()
while fl.running():
    model = fl.receive()
    w = model.params.get("w", np.zeros({SIZE}))
    step = np.linspace(-1.0, 1.0, {SIZE}) * (model.round + 1)   # the same change at both sites, norm ~ 36 per round
    fl.send(fl.Model(params={{"w": w + step}}, metrics={{"loss": 1.0}}, num_examples=1))
'''

PRIVACY = """\
api_version: 1
default_scope: public
scopes:
  public: []
  top:
    - filter: percentile_privacy
      args: {percentile: 75, gamma: 0.5}
  dp:
    - filter: gaussian_dp
      args: {clip_norm: 1.0, noise_multiplier: 0.5, delta: 1.0e-5}
"""


def step(round_no: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, SIZE) * (round_no + 1)


def percentile_reference(update: np.ndarray, percentile: float, gamma: float) -> np.ndarray:
    cutoff = np.percentile(np.abs(update), percentile)
    return np.clip(np.where(np.abs(update) < cutoff, 0.0, update), -gamma, gamma)


def rdp_epsilon(rounds: int, sigma: float, delta: float) -> float:
    """Opacus's conversion of the Gaussian mechanism's RDP (rounds * a / 2 sigma^2) at its orders."""
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=np.float64)
    eps = rounds * orders / (2 * sigma ** 2) - (np.log(delta) + np.log(orders)) / (orders - 1) + \
        np.log((orders - 1) / orders)
    return float(np.nanmin(eps))


def dp_job(root: Path, name: str, scope: str) -> Path:
    job = root / name
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(PATCHING_SCRIPT)
    (job / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: 2}}}}\n"
                                 f"min_sites: 2\nprivacy_scope: {scope}\n")
    return job


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A real local federation whose two sites have the DP scopes in their local/privacy.yml."""
    fed = make_federation(tmp_path_factory.mktemp("dp"), sites=2)
    try:
        for site in fed.sites:
            (fed.kit(site) / "local" / "privacy.yml").write_text(PRIVACY)
        fed.start("localhost")
        for site in fed.sites:
            fed.start(site)
        fed.wait_online(fed.sites)
        yield fed
    finally:
        fed.stop_all()


def run(fed: Federation, job: Path, out: Path) -> tuple[str, Path]:
    """Submit `job`, wait for it, download it: its id and its downloaded folder."""
    done = fed.flctl("job", "submit", job, "--watch", "--json")
    assert done.returncode == 0, done.stdout + done.stderr + fed.logs()
    job_id = json.loads(done.stdout)["id"]
    downloaded = fed.flctl("job", "download", job_id, "-o", out)
    assert downloaded.returncode == 0, downloaded.stderr
    return job_id, next(out.rglob("final.safetensors")).parent.parent


def simulated(job: Path, privacy: Path, workspace: Path) -> Path:
    import subprocess

    sim = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", str(workspace), "--privacy", str(privacy),
                          "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    return workspace / job.name


def test_percentile_privacy_filters_what_reaches_the_server_though_the_script_patched_it(real: Federation,
                                                                                        tmp_path: Path) -> None:
    """Both sites answer with the model plus a fixed change and patch their filters away: every round's global model
    the server saved is the previous one plus the numpy reference's filtered change (both sites alike, so FedAvg's
    mean is it), in the real federation and in flctl simulate --privacy alike."""
    # Prepare
    job = dp_job(tmp_path, "dp-top", "top")
    (tmp_path / "privacy.yml").write_text(PRIVACY)
    # Execute
    _job_id, real_dir = run(real, job, tmp_path / "download")
    sim_dir = simulated(job, tmp_path / "privacy.yml", tmp_path / "sim")
    # Assert
    expected = np.zeros(SIZE)
    for round_no in range(2):
        expected = expected + percentile_reference(step(round_no), 75, 0.5)
    for run_dir in (real_dir, sim_dir):
        final = load_file(run_dir / "models" / "final.safetensors")
        assert np.array_equal(final["w"], expected), run_dir
        assert np.count_nonzero(final["w"]) == SIZE // 4 and np.abs(final["w"]).max() == 1.0
    assert "patched the filters" in (sim_dir / "logs" / "site-1.log").read_text()


def test_gaussian_dp_clips_and_noises_what_reaches_the_server_and_reports_the_epsilon(real: Federation,
                                                                                    tmp_path: Path) -> None:
    """The server's final model is the sum of two rounds' clipped change (norm 1 each) plus the mean of the two
    sites' noise (deviation 0.5 / sqrt 2 a round); dp_epsilon per site and round is Opacus's epsilon of
    1 and 2 releases (in job show, the metrics and the job's log), in the real federation and in simulation."""
    # Prepare
    job = dp_job(tmp_path, "dp-gauss", "dp")
    (tmp_path / "privacy.yml").write_text(PRIVACY)
    # Execute
    job_id, real_dir = run(real, job, tmp_path / "download")
    show = real.flctl_json("job", "show", job_id)
    logs = real.flctl("job", "logs", job_id)
    sim_dir = simulated(job, tmp_path / "privacy.yml", tmp_path / "sim")
    # Assert
    clipped = sum(step(r) / np.linalg.norm(step(r)) for r in range(2))
    for run_dir in (real_dir, sim_dir):
        noise = load_file(run_dir / "models" / "final.safetensors")["w"] - clipped
        sigma = 0.5  # a round adds the mean of two sites' N(0, 0.5^2), of deviation 0.5 / sqrt 2; two rounds: 0.5
        assert abs(noise.mean()) < 4 * sigma / math.sqrt(SIZE), run_dir
        assert abs(noise.std() - sigma) < 0.05 * sigma, run_dir
        spent = {(m["site"], m["round"]): m["value"] for m in json.loads((run_dir / "metrics.json").read_text())
                 if m["name"] == "dp_epsilon"}
        assert spent.keys() == {(site, r) for site in ("site-1", "site-2") for r in (0, 1)}, spent
        for (_site, round_no), epsilon in spent.items():
            assert epsilon == pytest.approx(rdp_epsilon(round_no + 1, 0.5, 1e-5), rel=1e-9)
    last = show["last_metrics"]
    assert all(last[site]["dp_epsilon"] == pytest.approx(rdp_epsilon(2, 0.5, 1e-5), rel=1e-9) for site in last)
    assert logs.returncode == 0 and "privacy spent at site-1 in job" in logs.stdout, logs.stdout + logs.stderr
    assert "2 releases" in logs.stdout
    for site in real.sites:  # kept at the site for a restarted job process: two releases of noise multiplier 0.5
        ledger = real.kit(site) / "workspace" / "jobs" / job_id / "privacy" / "0-gaussian_dp.json"
        assert json.loads(ledger.read_text())["sites"] == {site: [[0.5, 1.0, 2]]}


def test_a_site_whose_privacy_yml_has_a_bad_dp_value_does_not_start(tmp_path: Path) -> None:
    """svt_privacy with epsilon 0 (a filter that would protect nothing): the site's `flctl node start` exits 2 naming
    the file and the field, before it connects; flctl simulate --privacy refuses the same file with exit 2."""
    import subprocess

    # Prepare
    fed = make_federation(tmp_path, sites=1)
    bad = PRIVACY + "  svt:\n    - filter: svt_privacy\n      args: {epsilon: 0}\n"
    privacy = fed.kit("site-1") / "local" / "privacy.yml"
    privacy.write_text(bad)
    # Execute
    try:
        code = fed.start("site-1").wait(60)
    finally:
        fed.stop_all()
    sim = subprocess.run([FLCTL, "simulate", str(dp_job(tmp_path, "dp-bad", "svt")), "-n", "2", "-w",
                          str(tmp_path / "sim"), "--privacy", str(privacy)], capture_output=True, text=True,
                         timeout=120, check=False)
    # Assert
    log = (fed.root / "site-1.log").read_text()
    assert code == 2, log
    assert f"{privacy}: scopes.svt[0].args.epsilon: " in log and "Traceback" not in log, log
    assert sim.returncode == 2 and "scopes.svt[0].args.epsilon: " in sim.stderr, sim.stderr
    assert not (tmp_path / "sim" / "dp-bad").exists()
