"""Federated statistics: the global figures equal numpy's over the pooled data (count, sum, mean, variance, min,
max within 1e-9, histograms exactly, quantiles within the stated bound); each site's privacy rules are applied
outside the script and a job cannot lower them; what a site refused or lacked is named; bad jobs are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flctl.node.client import api_wire as wire
from flctl.node.client.statistics import _figures as figures
from flctl.node.config.statistics_policy import StatisticsPolicy
from flctl.node.errors import JobError
from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.site.filters.pipeline import FilterPipeline
from flctl.node.site.statistics_release import release
from flctl.node.workflows import statistics_merge as merge
from flctl.node.workflows.statistics import Statistics, StatisticsArgs

from .test_fedavg import FakeFederation

EXACT = StatisticsPolicy(min_count=1, max_bins_percent=100, noise_level=(0.0, 0.0))
"""A site that releases everything as it is (so the global figures can be compared with numpy's)."""


def site_data(seed: int, rows: int, with_bmi: bool = True) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {"age": rng.normal(50 + seed, 12, rows).round(), "weight": rng.gamma(9, 8, rows)}
    data["age"][rng.random(rows) < 0.1] = np.nan
    if with_bmi:
        data["bmi"] = rng.normal(26, 4, rows)
    return data


SITES = {"site-1": site_data(1, 120), "site-2": site_data(2, 347, with_bmi=False), "site-3": site_data(3, 1013)}
"""3 sites of different sizes; site-2 has no bmi."""


def statistics_site(name: str, data: Any, policy: StatisticsPolicy = EXACT) -> Callable[[Task], TaskResult]:
    """A site as a real one answers: the script's figures (client side), then the site's release of them through
    the same FilterPipeline a site job process runs."""
    pipeline = FilterPipeline("job-1", "public", statistics=policy)

    def run(task: Task) -> TaskResult:
        raw = {"statistics": figures(data if callable(data) else lambda: data, task.meta)}
        out, _ = pipeline.result_out(task, wire.Result(1, 0, {}, raw), b"", name)
        return TaskResult(name, {}, 0, out.metrics, out.meta)

    return run


def run_statistics(args: dict[str, Any], sites: dict[str, Callable[[Task], TaskResult]]) -> dict[str, Any]:
    fed = FakeFederation(sites)  # type: ignore[arg-type]
    Statistics(StatisticsArgs.model_validate(args)).run(fed, None)  # type: ignore[arg-type]
    report: dict[str, Any] = fed.reports["statistics"]  # type: ignore[assignment]
    return report


ALL_STATS = {"statistics": {"count": {}, "sum": {}, "mean": {}, "variance": {}, "stddev": {}, "min": {}, "max": {},
                            "failure_count": {}, "histogram": {"*": {"bins": 20}, "age": {"bins": 7,
                                                                                         "range": [20, 90]}},
                            "quantile": {"*": [0.1, 0.5, 0.9]}},
             "sketch_bins": 40}


def test_global_figures_equal_numpy_over_the_pooled_data():
    """3 sites of 120, 347 and 1013 rows, bmi missing at one: global figures as numpy computes them pooled."""
    # Prepare
    sites = {name: statistics_site(name, data) for name, data in SITES.items()}
    # Execute
    report = run_statistics(ALL_STATS, sites)
    # Assert
    glob = report["results"]["global"]
    for feature in ("age", "weight", "bmi"):
        pooled = np.concatenate([d[feature] for d in SITES.values() if feature in d])
        values = pooled[~np.isnan(pooled)]
        got = glob[feature]
        assert got["count"] == values.size
        assert got["failure_count"] == pooled.size - values.size
        for name, want in (("sum", values.sum()), ("mean", values.mean()), ("variance", values.var(ddof=1)),
                           ("stddev", values.std(ddof=1)), ("min", values.min()), ("max", values.max())):
            assert got[name] == pytest.approx(want, rel=1e-9), (feature, name)
        low, high = (20, 90) if feature == "age" else (values.min(), values.max())
        bins = 7 if feature == "age" else 20
        assert got["histogram"]["counts"] == np.histogram(values, bins=bins, range=(low, high))[0].tolist()
        for q, value in got["quantile"].items():
            assert abs(value - np.quantile(values, float(q))) <= got["quantile_error"], (feature, q)
        assert got["quantile_error"] == pytest.approx((values.max() - values.min()) / 40)
    assert report["missing"] == {"site-2": {"bmi": "this site has no such column"}}
    assert "bmi" not in report["results"]["site-2"]
    site1 = report["results"]["site-1"]["weight"]
    assert site1["variance"] == pytest.approx(SITES["site-1"]["weight"].var(ddof=1), rel=1e-12)
    edges = (glob["weight"]["min"], glob["weight"]["max"])
    assert site1["histogram"]["counts"] == np.histogram(SITES["site-1"]["weight"], bins=20, range=edges)[0].tolist()


def test_global_variance_is_not_an_average_of_the_sites_variances():
    """Two sites with the same variance and different means: the global variance includes the gap between them."""
    # Prepare
    one, two = {"x": np.array([0.0, 2.0] * 50)}, {"x": np.array([10.0, 12.0] * 50)}
    sites = {"a": statistics_site("a", one), "b": statistics_site("b", two)}
    # Execute
    report = run_statistics({"statistics": {"variance": {}}}, sites)
    # Assert
    pooled = np.concatenate([one["x"], two["x"]])
    assert report["results"]["global"]["x"]["variance"] == pytest.approx(pooled.var(ddof=1), rel=1e-12)
    assert report["results"]["a"]["x"]["variance"] == pytest.approx(one["x"].var(ddof=1))


def test_a_job_asking_for_min_count_1_gets_the_sites_10():
    """A site whose policy says min_count 10: the job's min_count 1 changes nothing; a feature of 5 records, a
    sparse histogram bin and a small cohort are not released, and the result says why."""
    # Prepare
    data = {"rare": np.array([1.0, 2.0, 3.0, 4.0, 12345.678]), "common": np.r_[np.zeros(30), np.ones(3)]}
    policy = StatisticsPolicy(min_count=10, max_bins_percent=50, noise_level=(0.0, 0.0))
    sites = {"a": statistics_site("a", data, policy), "b": statistics_site("b", data, EXACT)}
    args = {"statistics": {"count": {}, "sum": {}, "histogram": {"*": {"bins": 2}},
                           "cohort": {"ones": "common == 1"}}, "min_count": 1}
    # Execute
    report = run_statistics(args, sites)
    # Assert
    assert "rare" not in report["results"]["a"]
    assert report["refused"]["a"]["rare"] == {"*": "fewer than 10 records (the site's min_count)"}
    assert report["results"]["b"]["rare"]["sum"] == pytest.approx(12355.678)
    assert report["results"]["a"]["common"]["histogram"]["counts"] == [30, None]
    assert report["results"]["a"]["common"]["histogram"]["suppressed_bins"] == 1
    assert report["cohorts"]["ones"]["sites"] == {"a": None, "b": 3}
    assert report["cohorts"]["ones"]["refused"] == {"a": "fewer than 10 records (the site's min_count)"}
    assert report["policy"]["a"]["min_count"] == 10 and report["policy"]["b"]["min_count"] == 1


def test_release_rebuilds_the_answer_from_known_figures_only():
    """Whatever else a script puts in its answer (raw rows, params, a made-up key) does not leave the site."""
    # Prepare
    pipeline = FilterPipeline("job-1", "public", statistics=EXACT)
    raw = {"statistics": {"features": {"x": {"count": 50, "sum": 5.0, "rows": [1, 2, 3], "secret": "data"}},
                          "leak": [1, 2, 3]}, "other": "meta"}
    task = Task("statistics", 0, {}, {"step": "summary"})  # type: ignore[arg-type]
    # Execute
    out, payload = pipeline.result_out(task, wire.Result(1, 7, {"m": 1.0}, raw), b"params bytes", "a")
    # Assert
    assert out.meta == {"statistics": {"step": "summary", "policy": {"min_count": 1, "max_bins_percent": 100.0,
                                                                     "noise_level": [0.0, 0.0], "noise": "none"},
                                       "features": {"x": {"count": 50, "failure_count": None, "sum": 5.0}},
                                       "refused": {}, "missing": {}}}
    assert out.metrics == {} and out.num_examples == 0
    from flctl.node.wire import tensors

    assert tensors.decode(payload) == {}


def test_noise_moves_min_max_outward_and_perturbs_counts_with_a_fixed_seed():
    """noise_level [0.1, 0.3]: min and max move outward by 10-30 % of their size; Laplace noise of scale 2 on
    counts has the mean absolute deviation 2 over many draws (statistically, fixed seed)."""
    # Prepare
    policy = StatisticsPolicy(min_count=1, noise_level=(0.1, 0.3), noise="laplace", noise_scale=2.0)
    raw = {"features": {"x": {"count": 1000, "failure_count": 0, "sum": 1.0, "min": -10.0, "max": 20.0}}}
    rng = np.random.default_rng(7)
    # Execute
    outs = [release({"step": "summary"}, raw, policy, rng)["features"]["x"] for _ in range(4000)]
    # Assert
    lows = np.array([o["min"] for o in outs])
    highs = np.array([o["max"] for o in outs])
    assert lows.max() <= -11.0 and lows.min() >= -13.0
    assert highs.min() >= 22.0 and highs.max() <= 26.0
    deviation = np.abs(np.array([o["count"] for o in outs]) - 1000)
    assert deviation.mean() == pytest.approx(2.0, rel=0.1)


def test_too_many_bins_are_refused_per_site_and_named():
    """max_bins_percent 10 with 50 records: 20 bins are refused at that site; the global histogram says whose
    counts it lacks."""
    # Prepare
    small = {"x": np.arange(50.0)}
    big = {"x": np.arange(1000.0)}
    policy = StatisticsPolicy(min_count=1, max_bins_percent=10, noise_level=(0.0, 0.0))
    sites = {"small": statistics_site("small", small, policy), "big": statistics_site("big", big, policy)}
    # Execute
    report = run_statistics({"statistics": {"histogram": {"x": {"bins": 20}}}}, sites)
    # Assert
    assert report["refused"]["small"]["x"]["histogram"] == ("20 bins is more than 10% of its records (the site's "
                                                            "max_bins_percent)")
    assert report["results"]["global"]["x"]["histogram"]["counts"] == np.histogram(big["x"], 20, (0, 999))[0].tolist()
    assert report["notes"]["x"] == ["global histogram without small"]


def test_a_site_whose_data_function_raises_fails_alone():
    """site-2's data function raises: its part fails with the reason, the others complete."""
    # Prepare
    def broken() -> Any:
        raise FileNotFoundError("/data/patients.csv")

    sites = {"site-1": statistics_site("site-1", SITES["site-1"]), "site-2": statistics_site("site-2", broken),
             "site-3": statistics_site("site-3", SITES["site-3"])}
    # Execute
    report = run_statistics({"statistics": {"count": {}, "mean": {}, "variance": {}}}, sites)
    # Assert
    assert report["failed"] == {"site-2": "the data function broken() failed: FileNotFoundError: /data/patients.csv"}
    pooled = np.concatenate([SITES["site-1"]["weight"], SITES["site-3"]["weight"]])
    assert report["results"]["global"]["weight"]["variance"] == pytest.approx(pooled.var(ddof=1), rel=1e-9)
    assert "site-2" not in report["results"]


def test_a_site_that_cannot_answer_is_failed_and_too_few_fail_the_job():
    """A SiteFailure is named; fewer answers than min_sites fail the workflow."""
    from flctl.node.workflows.base import WorkflowError

    def gone(task: Task) -> SiteFailure:
        return SiteFailure("b", "offline")

    sites = {"a": statistics_site("a", SITES["site-1"]), "b": gone}
    with pytest.raises(WorkflowError, match="only 1 of 2 sites answered"):
        fed = FakeFederation(sites)  # type: ignore[arg-type]
        Statistics(StatisticsArgs.model_validate({"statistics": {"count": {}}}), min_sites=2).run(fed, None)  # type: ignore[arg-type]


def test_sketch_quantiles_are_within_one_bin_of_numpy():
    """Quantiles read from a 50-bin histogram: within (max - min) / 50 of numpy's, on skewed data."""
    values = np.random.default_rng(3).lognormal(0, 1, 5000)
    counts = np.histogram(values, 50, (values.min(), values.max()))[0].tolist()
    qs = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    got = merge.sketch_quantiles(counts, values.min(), values.max(), qs)
    bound = merge.sketch_error(values.min(), values.max(), 50)
    for q in qs:
        assert abs(got[str(q)] - np.quantile(values, q)) <= bound


def _job(tmp_path: Path, args: str) -> Path:
    folder = tmp_path / "job"
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "app" / "stats.py").write_text("")
    (folder / "job.yml").write_text(f"api_version: 1\nname: s\nworkflow:\n  type: statistics\n  args:\n{args}"
                                    "app: {command: [python, stats.py]}\n")
    return folder


@pytest.mark.parametrize(("args", "field", "said"), [
    ("    statistics: {median: {}}\n", "workflow.args.statistics.median", "unknown key 'median'"),
    ("    statistics: {histogram: {'*': {}}}\n", "workflow.args.statistics.histogram.*.bins", "'bins' is required"),
    ("    statistics: {quantile: {'*': [0.5, 1.5]}}\n", "workflow.args.statistics.quantile.*[1]", "use less than 1"),
    ("    statistics: {quantile: {x: [0]}}\n", "workflow.args.statistics.quantile.x[0]", "use more than 0"),
    ("    statistics: {histogram: {height: {bins: 3}}}\n    features: [age]\n", "workflow.args",
     "statistics.histogram.height: 'height' is not one of the features (age)"),
    ("    statistics: {cohort: {old: 'age >= '}}\n", "workflow.args.statistics.cohort",
     "cohort 'old': expected a number or a quoted string, found the end"),
    ("    statistics: {}\n", "workflow.args", "name at least one statistic"),
])
def test_bad_statistics_are_refused_at_submit_naming_the_field(tmp_path: Path, args: str, field: str, said: str):
    """A statistic that does not exist, a histogram without bins, a quantile outside (0, 1), a feature not asked
    for, a filter that does not parse: refused when the job is read (exit 2 at submit), the field named."""
    with pytest.raises(JobError) as caught:
        load_job(_job(tmp_path, args))
    problems = caught.value.problems
    assert any(p.field == field and said in p.message for p in problems), [(p.field, p.message) for p in problems]


def test_the_example_job_is_valid():
    """playbooks/jobs/statistics reads as a valid statistics job."""
    job = load_job(Path(__file__).parent.parent / "playbooks" / "jobs" / "statistics")
    assert job.spec.workflow.type == "statistics"


def test_data_check_names_the_rule_each_column_breaks_and_hides_small_counts():
    """Per site and column: ok, or the first rule broken and its rows (hidden under min_count 10); the sites fit
    for training, and why the others are not."""
    from flctl.node.workflows.data_check import DataCheck, DataCheckArgs

    # Prepare
    good = {"age": np.arange(20.0, 80.0), "sex": np.array(["F", "M"] * 30, dtype=object)}
    bad = {"age": np.r_[np.arange(20.0, 75.0), [150.0] * 3, [np.nan] * 2],
           "sex": np.array(["F", "M", "X"] * 20, dtype=object)}
    policy = StatisticsPolicy(min_count=10, noise_level=(0.0, 0.0))
    fed = FakeFederation({"good": statistics_site("good", good, policy), "bad": statistics_site("bad", bad, policy)})
    args = DataCheckArgs.model_validate({"schema": {"age": {"type": "number", "min": 0, "max": 120},
                                                    "sex": {"type": "category", "categories": ["F", "M"]},
                                                    "bmi": {"required": False}, "site_id": {}}})
    # Execute
    DataCheck(args).run(fed, None)  # type: ignore[arg-type]
    # Assert
    report: Any = fed.reports["data_check"]
    bad_cols = report["results"]["bad"]["columns"]
    assert bad_cols["age"] == {"ok": False, "rule": "max: values above 120", "rows": None, "rows_hidden": True}
    assert bad_cols["sex"] == {"ok": False, "rule": "categories: values outside the allowed ones", "rows": 20,
                               "rows_hidden": False}
    assert bad_cols["bmi"]["ok"] and bad_cols["site_id"] == {"ok": False, "rule": "required: the column is absent",
                                                             "rows": None, "rows_hidden": False}
    assert report["fit"] == {"good": False, "bad": False}
    assert report["why"]["good"] == ["site_id: required: the column is absent"]
    assert report["results"]["good"]["rows"] == 60


def test_cohort_filters_parse_safely_and_count_matching_records():
    """The grammar: and/or/not, parentheses, in [...], numbers and strings; missing values match nothing; what is
    not the grammar (a call, an attribute, a lone name) is refused without evaluating anything."""
    from flctl.node.client.statistics import columns_of
    from flctl.node.jobs.filter_expr import ExpressionError, mask, parse

    data = columns_of({"age": [70, 50, np.nan, 80], "dx": ["C34", "C34", "C34", None], "bmi": [20, 30, 25, np.nan]})
    cases = {'age >= 65 and dx == "C34"': [1, 0, 0, 0], "not age < 65": [1, 0, 0, 1],
             "dx in ['C34', 'X']": [1, 1, 1, 0], "(age > 60 or bmi < 22) and not dx != 'C34'": [1, 0, 0, 0],
             "age != 50": [1, 0, 0, 1]}
    for text, want in cases.items():
        assert mask(parse(text), data).astype(int).tolist() == want, text
    for bad in ('__import__("os").system("true")', "age", "age >= 65 65", "age.real > 1 or", "", "age >= (1)"):
        with pytest.raises(ExpressionError):
            parse(bad)
    with pytest.raises(ExpressionError, match="'dx' is categorical"):
        mask(parse('dx < "C"'), data)


def test_job_show_tables_name_sites_global_and_refusals():
    """The report as tables: a feature's statistics by site and global, a refused one marked, cohorts."""
    from flctl.console.cli.job.statistics_view import cohort_table, feature_tables, refusals

    # Prepare
    data = {"x": np.arange(100.0), "tiny": np.r_[np.ones(3), [np.nan] * 97]}
    policy = StatisticsPolicy(min_count=10, max_bins_percent=100, noise_level=(0.0, 0.0))
    sites = {"a": statistics_site("a", data, policy), "b": statistics_site("b", data, EXACT)}
    report = run_statistics({"statistics": {"count": {}, "mean": {}, "histogram": {"*": {"bins": 2}},
                                            "cohort": {"big": "x >= 95"}}}, sites)
    # Execute
    tables = {title: (columns, rows) for title, columns, rows in feature_tables(report)}
    cohorts = cohort_table(report)
    lines = refusals(report)
    # Assert
    columns, rows = tables["x"]
    assert columns == ["statistic", "a", "b", "global"]
    assert rows[0] == ["count", "100", "100", "200"]
    assert rows[1] == ["mean", "49.5", "49.5", "49.5"]
    assert rows[2] == ["histogram", "[0, 99] 50 50", "[0, 99] 50 50", "[0, 99] 100 100"]
    assert tables["tiny"][1][0] == ["count", "refused", "3", "3"]
    assert cohorts is not None and cohorts[2] == [["big", "x >= 95", "< min_count", "5", "5 (at least)"]]
    assert "a refused tiny: fewer than 10 records (the site's min_count)" in lines


def test_flctl_simulate_runs_the_example_and_writes_tables_and_pngs(tmp_path: Path):
    """`flctl simulate playbooks/jobs/statistics -n 3`: FINISHED, the tables and cohorts printed, statistics.json
    and a PNG histogram per numeric feature beside it."""
    pytest.importorskip("pandas", reason="the example reads CSV with pandas: bash scripts/setup.sh --all")
    pytest.importorskip("matplotlib", reason="the PNG histograms need the stats extra: bash scripts/setup.sh --all")
    import os
    import subprocess

    from .federation import FLCTL

    # Prepare
    job = Path(__file__).parent.parent / "playbooks" / "jobs" / "statistics"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # each site's CSV goes under the test's folder
    # Execute
    done = subprocess.run([FLCTL, "simulate", str(job), "-n", "3", "-w", str(tmp_path / "ws")], capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    # Assert
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# statistics: age" in done.stdout and "elderly_lung" in done.stdout
    reports = tmp_path / "ws" / "statistics" / "reports"
    report = json.loads((reports / "statistics.json").read_text())
    assert report["results"]["global"]["diagnosis"] == {"categorical": True, "count": report["results"]["global"][
        "age"]["count"], "failure_count": 0}
    assert sorted(p.name for p in reports.glob("*.png")) == [f"statistics-{f}.png" for f in
                                                             ("age", "bmi", "smoker", "systolic")]
    assert (reports / "statistics-age.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("text", "said"), [
    ("statistics: {min_count: 0}", "statistics.min_count: 0 is too small; use 1 or more"),
    ("statistics: {mincount: 3}", "statistics: 'mincount' is not a key of statistics (keys: min_count, "
                                  "max_bins_percent, noise_level, noise, noise_scale)"),
    ("statistics: {noise_level: [0.5, 0.1]}", "noise_level [0.5, 0.1] must be two shares with 0 <= low <= high <= 1"),
    ("statistics: {noise: uniform}", "statistics.noise: 'uniform' is not allowed; use 'none', 'laplace' or "
                                     "'gaussian'"),
])
def test_a_bad_statistics_section_of_privacy_yml_stops_the_node_naming_the_field(tmp_path: Path, text: str,
                                                                                said: str):
    """privacy.yml's statistics: section is checked like the rest of the file: KitError, the field named."""
    from flctl.node.config.privacy import load_privacy
    from flctl.provisioner.errors import KitError

    path = tmp_path / "privacy.yml"
    path.write_text(text)
    with pytest.raises(KitError) as caught:
        load_privacy(path)
    assert said in str(caught.value)


def test_privacy_yml_without_a_statistics_section_gets_flares_defaults(tmp_path: Path):
    """No statistics: section: min_count 10, max_bins_percent 10, noise_level [0.1, 0.3], no count noise."""
    from flctl.node.config.privacy import load_privacy

    path = tmp_path / "privacy.yml"
    path.write_text("default_scope: public\nscopes: {public: []}\n")
    policy = load_privacy(path).pipeline("job-1", None).statistics
    assert (policy.min_count, policy.max_bins_percent, policy.noise_level, policy.noise) == (10, 10.0, (0.1, 0.3),
                                                                                           "none")


def test_job_show_prints_the_data_check_as_a_site_by_column_table():
    """One row per site: fit or not, its rows (or < min_count), and per column ok or the rule and its rows."""
    from flctl.console.cli.job.statistics_view import data_check_table

    report = {"sites": ["a", "b", "c"], "columns": ["age", "sex"], "fit": {"a": True, "b": False, "c": False},
              "results": {"a": {"rows": 60, "columns": {"age": {"ok": True, "rule": "", "rows": 0},
                                                        "sex": {"ok": True, "rule": "", "rows": 0}}},
                          "b": {"rows": None, "columns": {
                              "age": {"ok": False, "rule": "max: values above 120", "rows": None,
                                      "rows_hidden": True},
                              "sex": {"ok": False, "rule": "categories: values outside the allowed ones",
                                      "rows": 20, "rows_hidden": False}}}},
              "failed": {"c": "offline"}}
    table = data_check_table(report)
    assert table is not None
    title, columns, rows = table
    assert title.startswith("data check")
    assert columns == ["site", "fit", "rows", "age", "sex"]
    assert rows == [["a", "yes", "60", "ok", "ok"],
                    ["b", "no", "< min_count", "max: values above 120 (< min_count rows)",
                     "categories: values outside the allowed ones (20 rows)"],
                    ["c", "failed", "-", "-", "-"]]


def test_columns_from_pandas_count_na_and_inf_as_missing():
    """A DataFrame's nullable Int64 column stays numeric (NA missing), ±inf is missing, text is categorical."""
    pd = pytest.importorskip("pandas", reason="needs the stats extra: bash scripts/setup.sh --all")

    from flctl.node.client.statistics import columns_of, summary

    frame = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"), "x": [1.0, np.inf, -np.inf],
                          "c": ["a", None, "b"]})
    figures = summary(columns_of(frame), None)["features"]
    assert figures["n"] == {"count": 2, "failure_count": 1, "sum": 4.0, "mean": 2.0, "min": 1.0, "max": 3.0,
                            "variance": 2.0}
    assert figures["x"]["count"] == 1 and figures["x"]["failure_count"] == 2
    assert figures["c"] == {"count": 2, "failure_count": 1, "categorical": True}
