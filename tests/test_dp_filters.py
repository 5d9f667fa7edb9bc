"""The differential-privacy filters of a site: percentile_privacy exact against a plain numpy reference of Shokri &
Shmatikov's rule, svt_privacy exact against a plain reference of NVIDIA FLARE's SVT with the same seed and
statistically, gaussian_dp's clip and noise statistically with a fixed seed and its epsilon against Opacus's RDP
accountant and the closed form; all on the update of the model the task brought, whatever the script claims."""

from __future__ import annotations

import math
from importlib.util import find_spec
from typing import Any

import numpy as np
import pytest

from flctl.node.client import api_wire as wire
from flctl.node.config.privacy import FilterEntry, PrivacyRules, load_privacy
from flctl.node.jobs.tasks import PARAMS_TYPE, Params, Task, TaskKind, TaskResult
from flctl.node.site.filters import make_filter
from flctl.node.site.filters.base import FilterContext, FilterError
from flctl.node.site.filters.gaussian_dp import GaussianDp, GaussianDpArgs
from flctl.node.site.filters.percentile_privacy import PercentilePrivacy, PercentilePrivacyArgs
from flctl.node.site.filters.pipeline import FilterPipeline
from flctl.node.site.filters.svt_privacy import SvtPrivacy, SvtPrivacyArgs
from flctl.node.wire import tensors
from flctl.provisioner.errors import KitError

RECEIVED: Params = {
    "conv.weight": np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4),
    "conv.bias": np.array([0.5, -1.25], dtype=np.float32),
    "fc.weight": np.arange(12, dtype=np.float64).reshape(3, 4) / 10,
    "steps": np.array(3, dtype=np.int64),
}
DIFF: Params = {  # the script's change, fixed: mixed signs and magnitudes, some exactly tied
    "conv.weight": (np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 11.5) / 200,
    "conv.bias": np.array([0.03, -0.001], dtype=np.float32),
    "fc.weight": np.array([[0.2, -0.2, 0.0, 0.004], [0.05, -0.05, 0.007, -0.007], [1.0, -3.0, 0.01, 0.02]]),
    "steps": np.array(1, dtype=np.int64),
}
TRAINED = {name: (RECEIVED[name] + DIFF[name]).astype(RECEIVED[name].dtype) for name in RECEIVED}
TASK = Task(TaskKind.TRAIN, 3, {}, {})
needs_opacus = pytest.mark.skipif(find_spec("opacus") is None,
                                  reason="gaussian_dp needs Opacus: bash scripts/setup.sh --all")


def ctx(site: str = "site-1", round_no: int = 3, received: Params | None = None,
        kind: str = TaskKind.TRAIN) -> FilterContext:
    return FilterContext(site, "job-1", "private", kind, round_no, RECEIVED if received is None else received)


def update_reference(trained: Params, received: Params) -> dict[str, np.ndarray]:
    """The plain update: trained less received, in float64."""
    return {name: trained[name].astype(np.float64) - received[name].astype(np.float64) for name in trained}


def percentile_reference(update: dict[str, np.ndarray], percentile: float, gamma: float) -> dict[str, np.ndarray]:
    """Shokri & Shmatikov as FLARE writes it: the percentile of all |update|; below it 0; the rest clipped."""
    cutoff = np.percentile(np.concatenate([np.abs(v).ravel() for v in update.values()]), percentile)
    out = {}
    for name, value in update.items():
        kept = np.array(value, dtype=np.float64)
        kept[(kept > -cutoff) & (kept < cutoff)] = 0.0
        out[name] = np.clip(kept, -gamma, gamma)
    return out


@pytest.mark.parametrize(("percentile", "gamma"), [(10, 0.01), (50, 0.1), (90, 1.0), (0, 0.05), (100, 5.0)])
def test_percentile_privacy_on_a_full_model_is_the_received_model_plus_the_reference_update(percentile: float,
                                                                                           gamma: float) -> None:
    """A full model out: the task's model plus the percentile-filtered update, each tensor in its own dtype."""
    # Prepare
    made = PercentilePrivacy(PercentilePrivacyArgs(percentile=percentile, gamma=gamma))
    result = TaskResult("site-1", TRAINED, 5, {"loss": 0.5}, {})
    expected = percentile_reference(update_reference(TRAINED, RECEIVED), percentile, gamma)
    # Execute
    out = made.filter_result(result, ctx())
    # Assert
    for name, value in out.params.items():
        assert value.dtype == TRAINED[name].dtype
        want = RECEIVED[name].astype(np.float64) + expected[name]
        if value.dtype.kind == "i":
            want = np.rint(want)
        assert np.array_equal(value, want.astype(value.dtype)), name
    assert (out.num_examples, out.metrics) == (5, {"loss": 0.5})


def test_percentile_privacy_on_a_diff_sends_the_filtered_diff_exactly() -> None:
    """A diff out (params_type diff): the filtered diff itself; the task's model is not added."""
    # Prepare
    made = PercentilePrivacy(PercentilePrivacyArgs(percentile=40, gamma=0.03))
    diff = {name: value.astype(np.float64) for name, value in DIFF.items() if name != "steps"}
    result = TaskResult("site-1", diff, 5, {}, {PARAMS_TYPE: "diff"})
    # Execute
    out = made.filter_result(result, ctx())
    # Assert
    expected = percentile_reference(diff, 40, 0.03)
    assert sorted(out.params) == sorted(expected)
    assert all(np.array_equal(out.params[name], expected[name]) for name in expected)
    assert out.meta == {PARAMS_TYPE: "diff"}


def svt_reference(update: dict[str, np.ndarray], fraction: float, epsilon: float, noise_var: float, gamma: float,
                  tau: float, replace: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """NVIDIA FLARE's SVTPrivacy, written out plainly (names sorted, one vector), drawing from `rng` as it draws."""
    names = sorted(update)
    delta_w = np.concatenate([update[n].ravel() for n in names])
    n_upload = int(min(math.ceil(delta_w.size * fraction), delta_w.size))
    threshold = tau + rng.laplace(scale=gamma * 2.0 / epsilon)
    eps_2 = epsilon * (2.0 * n_upload) ** (2.0 / 3.0)
    lambda_nu = gamma * 4.0 * n_upload / eps_2
    accepted: list[int] = []
    candidate_idx = np.arange(delta_w.size)
    clipped_w = np.abs(np.clip(delta_w, a_min=-gamma, a_max=gamma))
    while len(accepted) < n_upload:
        nu_i = rng.laplace(scale=lambda_nu, size=candidate_idx.shape)
        above = (clipped_w[candidate_idx] + nu_i) >= threshold
        accepted += candidate_idx[above].tolist()
        candidate_idx = candidate_idx[~above]
    chosen = rng.choice(np.array(accepted), size=n_upload, replace=replace)
    noise = rng.laplace(scale=gamma * 2.0 / noise_var, size=chosen.shape)
    delta_w[chosen] = np.clip(delta_w[chosen] + noise, a_min=-gamma, a_max=gamma)
    delta_w[list(set(range(delta_w.size)) - set(chosen.tolist()))] = 0.0
    out, start = {}, 0
    for name in names:
        out[name] = delta_w[start:start + update[name].size].reshape(update[name].shape)
        start += update[name].size
    return out


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("seed", [0, 7])
def test_svt_privacy_equals_flare_s_algorithm_drawn_from_the_same_seed(seed: int, replace: bool) -> None:
    """Same seed, same draws: the filtered diff is FLARE's SVT of the update, entry for entry."""
    # Prepare
    args = SvtPrivacyArgs(fraction=0.3, epsilon=0.5, noise_var=0.5, gamma=0.05, tau=1e-3, replace=replace)
    diff = {name: value.astype(np.float64) for name, value in DIFF.items()}
    result = TaskResult("site-1", diff, 5, {}, {PARAMS_TYPE: "diff"})
    # Execute
    out = SvtPrivacy(args, np.random.default_rng(seed)).filter_result(result, ctx())
    # Assert
    expected = svt_reference(diff, 0.3, 0.5, 0.5, 0.05, 1e-3, replace, np.random.default_rng(seed))
    for name in diff:
        assert np.array_equal(out.params[name], expected[name]), name


def test_svt_privacy_shares_at_most_the_fraction_each_clipped_and_noised() -> None:
    """On 10,000 entries: at most ceil(n * fraction) entries are shared (exactly that many without replacement),
    each within [-gamma, gamma]; the shared values differ from the update (noise); the rest are 0."""
    # Prepare
    rng = np.random.default_rng(3)
    update = {"w": rng.normal(0, 0.1, (100, 100))}
    args = SvtPrivacyArgs(fraction=0.05, epsilon=1.0, noise_var=1.0, gamma=0.1, replace=False)
    # Execute
    out = SvtPrivacy(args, np.random.default_rng(11)).filter_result(
        TaskResult("site-1", update, 1, {}, {PARAMS_TYPE: "diff"}), ctx())
    with_replacement = SvtPrivacy(SvtPrivacyArgs(fraction=0.05, gamma=0.1), np.random.default_rng(11)).filter_result(
        TaskResult("site-1", update, 1, {}, {PARAMS_TYPE: "diff"}), ctx())
    # Assert
    shared = out.params["w"] != 0
    assert shared.sum() == 500
    assert 0 < np.count_nonzero(with_replacement.params["w"]) <= 500
    assert np.abs(out.params["w"]).max() <= 0.1
    assert not np.allclose(out.params["w"][shared], np.clip(update["w"][shared], -0.1, 0.1))


@needs_opacus
def test_gaussian_dp_clips_the_update_s_norm_and_adds_noise_of_the_right_size() -> None:
    """An update of norm 100 and one of norm 0.5 (clip_norm 1, noise multiplier 0.8, 40,000 entries, fixed seed): the
    first is scaled to norm 1, the second kept; what is added is the seed's Gaussian draw, exactly, and its mean and
    standard deviation are 0 and 0.8 within sampling error."""
    # Prepare
    shapes = {"a": (100, 200), "b": (20000,)}
    big = {name: np.full(shape, 100 / math.sqrt(40000)) for name, shape in shapes.items()}
    small = {name: np.full(shape, 0.5 / math.sqrt(40000)) for name, shape in shapes.items()}
    args = GaussianDpArgs(clip_norm=1.0, noise_multiplier=0.8)
    for update, scale in ((big, 0.01), (small, 1.0)):
        # Execute
        out = GaussianDp(args, np.random.default_rng(5)).filter_result(
            TaskResult("site-1", update, 1, {}, {PARAMS_TYPE: "diff"}), ctx())
        # Assert
        draws = np.random.default_rng(5)
        noise = {name: out.params[name] - update[name] * scale for name in sorted(shapes)}
        for name in sorted(shapes):
            assert np.allclose(noise[name], draws.normal(0.0, 0.8, shapes[name]), rtol=0, atol=1e-12)
        everything = np.concatenate([v.ravel() for v in noise.values()])
        assert abs(everything.mean()) < 4 * 0.8 / math.sqrt(everything.size)
        assert abs(everything.std() - 0.8) < 0.02
        clipped = float(np.linalg.norm(np.concatenate([update[n].ravel() * scale for n in shapes])))
        assert math.isclose(clipped, min(1.0, float(np.linalg.norm(np.concatenate([v.ravel() for v in
                                                                                     update.values()])))))


def rdp_epsilon_closed_form(rounds: int, noise_multiplier: float, delta: float) -> float:
    """With sample rate 1, the Gaussian mechanism's RDP at order a is a / (2 sigma^2) per release; Opacus converts
    it with Balle et al. 2020 (its get_privacy_spent) at its orders."""
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=np.float64)
    rdp = rounds * orders / (2 * noise_multiplier ** 2)
    eps = rdp - (np.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    return float(np.nanmin(eps))


def test_gaussian_dp_reports_the_epsilon_opacus_accounts_per_site_and_round() -> None:
    """Three rounds at site-1 and one at site-2, interleaved: each result's dp_epsilon is what Opacus's RDPAccountant
    gives for that site's releases so far (and, at sample rate 1, the closed form); dp_delta is the delta."""
    accountants = pytest.importorskip("opacus.accountants", reason="needs the privacy extra: bash scripts/setup.sh "
                                                                   "--all")
    # Prepare
    made = make_filter("gaussian_dp", {"clip_norm": 1.0, "noise_multiplier": 1.1, "delta": 1e-5})
    sent = []
    # Execute
    for site, round_no in (("site-1", 0), ("site-2", 0), ("site-1", 1), ("site-1", 2)):
        out = made.filter_result(TaskResult(site, dict(TRAINED), 1, {"loss": 1.0}, {}), ctx(site, round_no))
        sent.append((site, out.metrics))
    # Assert
    for site, rounds, metrics in (("site-1", 1, sent[0][1]), ("site-2", 1, sent[1][1]), ("site-1", 3, sent[3][1])):
        reference = accountants.RDPAccountant()
        for _ in range(rounds):
            reference.step(noise_multiplier=1.1, sample_rate=1.0)
        assert metrics["dp_epsilon"] == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-12), site
        assert metrics["dp_epsilon"] == pytest.approx(rdp_epsilon_closed_form(rounds, 1.1, 1e-5), rel=1e-9)
        assert metrics["dp_delta"] == 1e-5 and metrics["loss"] == 1.0
    assert sent[0][1]["dp_epsilon"] < sent[2][1]["dp_epsilon"] < sent[3][1]["dp_epsilon"]


@needs_opacus
def test_gaussian_dp_refuses_a_release_beyond_max_epsilon_and_sends_nothing() -> None:
    """With max_epsilon between the first and the second round's epsilon, the second result fails (FilterError)."""
    # Prepare
    one, two = rdp_epsilon_closed_form(1, 2.0, 1e-5), rdp_epsilon_closed_form(2, 2.0, 1e-5)
    rules = PrivacyRules(scopes={"public": [], "dp": [FilterEntry(filter="gaussian_dp", args={
        "clip_norm": 1.0, "noise_multiplier": 2.0, "max_epsilon": (one + two) / 2})]})
    filters = rules.pipeline("job-1", "dp")
    answer = wire.Result(task_id=1, num_examples=1)
    data = tensors.encode(RECEIVED)
    # Execute
    filters.task_in(TASK, data, "site-1")
    first, _sent = filters.result_out(TASK, answer, tensors.encode(TRAINED), "site-1")
    filters.task_in(TASK, data, "site-1")
    with pytest.raises(FilterError) as refused:
        filters.result_out(TASK, answer, tensors.encode(TRAINED), "site-1")
    # Assert
    assert first.metrics["dp_epsilon"] == pytest.approx(one, rel=1e-9)
    assert "would spend epsilon" in str(refused.value) and "above this site's max_epsilon" in str(refused.value)


@needs_opacus
def test_gaussian_dp_s_ledger_keeps_the_privacy_spent_across_a_restart_of_the_job_process(tmp_path: Any) -> None:
    """Two releases with a ledger, then a new pipeline (a restarted job process) on the same folder: its first
    release reports the epsilon of three; a damaged ledger refuses the job (ValueError naming the file)."""
    # Prepare
    rules = PrivacyRules(scopes={"public": [], "dp": [FilterEntry(filter="gaussian_dp", args={
        "clip_norm": 1.0, "noise_multiplier": 1.1})]})
    answer, data = wire.Result(task_id=1, num_examples=1), tensors.encode(RECEIVED)
    spent = []
    # Execute
    for releases in (2, 1):
        filters = rules.pipeline("job-1", "dp")
        filters.keep_state(tmp_path / "privacy")
        for _ in range(releases):
            filters.task_in(TASK, data, "site-1")
            out, _sent = filters.result_out(TASK, answer, tensors.encode(TRAINED), "site-1")
            spent.append(out.metrics["dp_epsilon"])
    ledger = tmp_path / "privacy" / "0-gaussian_dp.json"
    saved = ledger.read_text()
    ledger.write_text("{not json")
    with pytest.raises(ValueError) as damaged:
        rules.pipeline("job-1", "dp").keep_state(tmp_path / "privacy")
    # Assert
    assert spent == [pytest.approx(rdp_epsilon_closed_form(n, 1.1, 1e-5), rel=1e-9) for n in (1, 2, 3)]
    assert saved == '{"api_version": 1, "sites": {"site-1": [[1.1, 1.0, 3]]}}\n'
    assert str(damaged.value).startswith(f"{ledger} cannot be read as the privacy spent so far")


def percentile_pipeline() -> FilterPipeline:
    rules = PrivacyRules(scopes={"public": [], "top": [FilterEntry(filter="percentile_privacy",
                                                                   args={"percentile": 50, "gamma": 0.02})]})
    return rules.pipeline("job-1", "top")


def test_the_pipeline_filters_the_update_of_the_model_the_task_brought() -> None:
    """task_in keeps the task's model for the site; result_out's bytes are that model plus the filtered update."""
    # Prepare
    filters = percentile_pipeline()
    # Execute
    task, given = filters.task_in(TASK, tensors.encode(RECEIVED), "site-1")
    _answer, out = filters.result_out(task, wire.Result(1, 4), tensors.encode(TRAINED), "site-1")
    # Assert
    expected = percentile_reference(update_reference(TRAINED, RECEIVED), 50, 0.02)
    got = tensors.decode(out)
    assert bytes(given) == tensors.encode(RECEIVED)
    for name in ("conv.weight", "conv.bias", "fc.weight"):
        assert np.array_equal(got[name], (RECEIVED[name] + expected[name]).astype(RECEIVED[name].dtype)), name


@pytest.mark.parametrize("trick", ["bits as int32", "a new name", "claims diff", "another shape"])
def test_what_a_script_disguises_is_filtered_as_update_too(trick: str) -> None:
    """A script smuggling the raw model (its bits as an int32 tensor, under a new name, called a diff, reshaped) gets
    it through the filter like any update: every value sent is within gamma (0.02) of the task's model or of 0."""
    # Prepare
    filters = percentile_pipeline()
    secret = np.random.default_rng(0).normal(0, 5, (3, 4))
    params: dict[str, Any] = dict(TRAINED)
    meta: dict[str, Any] = {}
    if trick == "bits as int32":
        params["fc.weight"] = secret.view(np.int32).reshape(3, 8)
    elif trick == "a new name":
        params["leak"] = secret
    elif trick == "claims diff":
        params, meta = {"fc.weight": RECEIVED["fc.weight"] + secret}, {PARAMS_TYPE: "diff"}
    else:
        params["fc.weight"] = secret.reshape(12)
    # Execute
    filters.task_in(TASK, tensors.encode(RECEIVED), "site-1")
    _answer, out = filters.result_out(TASK, wire.Result(1, 4, {}, meta), tensors.encode(params), "site-1")
    # Assert
    for name, value in tensors.decode(out).items():
        base = RECEIVED.get(name) if not meta and name in RECEIVED and RECEIVED[name].shape == value.shape else None
        reference = np.zeros(value.shape) if base is None else base.astype(np.float64)
        tolerance = 0.02 + (0.5 if value.dtype.kind in "iub" else 1e-6)  # integers are rounded back
        assert np.abs(value.astype(np.float64) - reference).max() <= tolerance, name


def test_an_update_with_nan_fails_the_result() -> None:
    """NaN cannot be clipped: the result fails (nothing is sent)."""
    # Prepare
    filters = percentile_pipeline()
    broken = dict(TRAINED, **{"fc.weight": np.full((3, 4), np.nan)})
    # Execute
    filters.task_in(TASK, tensors.encode(RECEIVED), "site-1")
    with pytest.raises(FilterError) as failed:
        filters.result_out(TASK, wire.Result(1, 4), tensors.encode(broken), "site-1")
    # Assert
    assert "the update of fc.weight holds NaN or infinity" in str(failed.value)


@pytest.mark.parametrize("name", ["percentile_privacy", "svt_privacy",
                                  pytest.param("gaussian_dp", marks=needs_opacus)])
def test_a_swarm_aggregate_goes_out_as_the_weighted_mean_of_the_task_s_models_whatever_the_script_sent(
        name: str) -> None:
    """An aggregate task (two sites' models, already filtered at their sites, weights 1 and 3): the site sends the
    weighted mean its job process computes (not filtered again), byte for byte what an honest script sends; a
    script answering with its own raw model is not heard."""
    from flctl.node.client.swarm import weighted_mean

    # Prepare
    args = {"gaussian_dp": {"clip_norm": 1.0, "noise_multiplier": 1.0}}.get(name, {})
    filters = PrivacyRules(scopes={"public": [], "s": [FilterEntry(filter=name, args=args)]}).pipeline("job-1", "s")
    bundle = {f"site-{i}/{t}": value * i for i in (1, 2) for t, value in RECEIVED.items() if t != "steps"}
    task = Task(TaskKind.AGGREGATE, 3, {}, {"weights": {"site-1": 1, "site-2": 3}})
    honest = weighted_mean(bundle, {"site-1": 1, "site-2": 3})
    outs = []
    # Execute
    for answer in (honest, {"fc.weight": np.full((3, 4), 42.0)}):
        filters.task_in(task, tensors.encode(bundle), "site-1")
        _answer, out = filters.result_out(task, wire.Result(1, 1), tensors.encode(answer), "site-1")
        outs.append(bytes(out))
    # Assert
    assert outs == [tensors.encode(honest)] * 2


PRIVATE = "default_scope: public\nscopes:\n  public: []\n  private:\n"


@pytest.mark.parametrize(("entry", "words"), [
    ("{filter: svt_privacy, args: {epsilon: 0}}", "scopes.private[0].args.epsilon: "),
    ("{filter: svt_privacy, args: {epsilon: -1}}", "scopes.private[0].args.epsilon: "),
    ("{filter: percentile_privacy, args: {percentile: 101}}", "scopes.private[0].args.percentile: "),
    ("{filter: percentile_privacy, args: {percentile: -5}}", "scopes.private[0].args.percentile: "),
    ("{filter: percentile_privacy, args: {gamma: 0}}", "scopes.private[0].args.gamma: "),
    ("{filter: svt_privacy, args: {fraction: 1.5}}", "scopes.private[0].args.fraction: "),
    ("{filter: gaussian_dp, args: {noise_multiplier: 1.0}}", "scopes.private[0].args: 'clip_norm' is required"),
    ("{filter: gaussian_dp, args: {clip_norm: 1, noise_multiplier: 1, delta: 1}}", "scopes.private[0].args.delta: "),
    ("{filter: gaussian_dp, args: {clip_norm: 1, noise_multiplier: 0}}",
     "scopes.private[0].args.noise_multiplier: "),
    ("{filter: gaussian_dp, args: {clip_norm: 1, noise_multiplier: 1, epsilon: 3}}",
     "'epsilon' is not an argument of gaussian_dp (its arguments: clip_norm, noise_multiplier, delta, sample_rate, "
     "max_epsilon)"),
    ("{filter: percentile_privacy, apply_to: task}", "scopes.private[0].apply_to: percentile_privacy filters only "
                                                     "results, not task"),
    ("{filter: dp_gaussian}", "unknown filter 'dp_gaussian'; known filters: exclude_vars, gaussian_dp, "
                              "percentile_privacy, svt_privacy"),
])
def test_a_bad_dp_filter_in_privacy_yml_is_refused_naming_file_and_field(tmp_path: Any, entry: str,
                                                                         words: str) -> None:
    """epsilon <= 0, a percentile outside 0-100, a missing or unknown argument, a task filter of the update:
    KitError (exit 2 at node start) naming the file, the scope, the entry and the field."""
    # Prepare
    path = tmp_path / "privacy.yml"
    path.write_text(PRIVATE + f"    - {entry}\n")
    # Execute
    with pytest.raises(KitError) as caught:
        load_privacy(path)
    # Assert
    assert str(caught.value).startswith(f"{path}: ") and words in str(caught.value), str(caught.value)
