"""Federated statistics on a real local federation (gRPC, mTLS, a job process per site): exact global figures,
each site's own privacy.yml applied at the site (a job asking for min_count 1 gets the site's 10, and the server
never receives the figure it hides), `flctl job show` prints the tables, `--json` and the download hold the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flctl.node.admin.admin_client import AdminClient

from .federation import make_federation, running
from .job_folders import workflow_job

SCRIPT = '''
import numpy as np
import flctl.client as fl

ROWS = {"site-1": 40, "site-2": 233, "site-3": 517}


def load():
    site = fl.site_name()
    rng = np.random.default_rng(int(site[-1]))
    rows = ROWS[site]
    data = {"age": rng.normal(60, 10, rows).round(), "weight": rng.gamma(9, 8, rows)}
    if site != "site-3":
        data["bmi"] = rng.normal(26, 4, rows)
    if site == "site-1":
        data["rare"] = np.array([1.0, 2.0, 3.0, 4.0, 12345.678] + [np.nan] * (rows - 5))
    return data


if __name__ == "__main__":
    fl.serve_statistics(load)
'''


def held(feature: str) -> dict[str, np.ndarray]:
    """What each of the script's sites holds of `feature` (the same generator as SCRIPT)."""
    parts = {}
    for site, rows in (("site-1", 40), ("site-2", 233), ("site-3", 517)):
        rng = np.random.default_rng(int(site[-1]))
        data = {"age": rng.normal(60, 10, rows).round(), "weight": rng.gamma(9, 8, rows)}
        if site != "site-3":
            data["bmi"] = rng.normal(26, 4, rows)
        if feature in data:
            parts[site] = data[feature]
    return parts


def pooled(feature: str) -> np.ndarray:
    return np.concatenate(list(held(feature).values()))


def test_statistics_on_a_real_federation_enforce_each_sites_rules(tmp_path: Path):
    """3 sites over mTLS; site-1's privacy.yml says min_count 10 and the job asks for 1: its 5-record feature is
    refused, the value never reaches the server; the global figures equal numpy's over the pooled data."""
    pytest.importorskip("matplotlib", reason="the PNG histograms need the stats extra: bash scripts/setup.sh --all")
    # Prepare
    fed_def = make_federation(tmp_path, sites=3)
    (fed_def.kit("site-1") / "local" / "privacy.yml").write_text(
        "statistics: {min_count: 10, max_bins_percent: 100, noise_level: [0, 0]}\n")
    for site in ("site-2", "site-3"):
        (fed_def.kit(site) / "local" / "privacy.yml").write_text(
            "statistics: {min_count: 1, max_bins_percent: 100, noise_level: [0, 0]}\n")
    args = {"statistics": {"count": {}, "sum": {}, "mean": {}, "variance": {}, "stddev": {}, "min": {}, "max": {},
                           "histogram": {"*": {"bins": 8}}, "quantile": {"*": [0.5]}},
            "min_count": 1, "sketch_bins": 20, "timeout_s": 60}
    job = workflow_job(tmp_path, "stats", "statistics", args, SCRIPT, min_sites=3)
    with running(fed_def) as fed:
        with AdminClient.from_kit(fed.admin_kit) as admin:
            job_id = admin.submit_job(job)
            list(admin.watch(job_id))
            info = admin.get_job(job_id)
            target = admin.download_job(job_id, tmp_path / "out")
        # Execute
        shown = fed.flctl("job", "show", job_id)
        as_json = fed.flctl_json("job", "show", job_id)
        downloaded = fed.flctl("job", "download", job_id, "-o", tmp_path / "cli")
        server_files = [p for p in fed.kit("localhost").rglob("*") if p.is_file()]
        leaked = [p for p in server_files if b"12345.678" in p.read_bytes()]
    # Assert
    assert info.status == "FINISHED", info.error + fed_def.logs()
    report = info.reports["statistics"]
    for feature in ("age", "weight", "bmi"):
        values = pooled(feature)
        got = report["results"]["global"][feature]
        assert got["count"] == values.size
        assert got["mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert got["variance"] == pytest.approx(values.var(ddof=1), rel=1e-9)
        assert got["min"] == values.min() and got["max"] == values.max()
        edges = (values.min(), values.max())
        own = np.histogram(held(feature)["site-1"], 8, edges)[0]
        hidden = (own > 0) & (own < 10)  # site-1's min_count 10 holds back its sparse bins
        assert report["results"]["site-1"][feature]["histogram"]["counts"] == [
            None if h else int(c) for c, h in zip(own, hidden, strict=True)]
        assert got["histogram"]["counts"] == (np.histogram(values, 8, edges)[0] - np.where(hidden, own, 0)).tolist()
        assert abs(got["quantile"]["0.5"] - np.median(values)) <= got["quantile_error"]
    assert report["refused"]["site-1"]["rare"] == {"*": "fewer than 10 records (the site's min_count)"}
    assert report["policy"]["site-1"]["min_count"] == 10
    assert report["missing"]["site-3"] == {"bmi": "this site has no such column"}
    assert not leaked, f"the server holds site-1's hidden value in {leaked}"
    assert "statistics: weight" in shown.stdout and "site-1 refused rare" in shown.stderr, shown.stdout + shown.stderr
    assert as_json["reports"]["statistics"]["results"]["global"]["age"]["count"] == pooled("age").size
    assert json.loads((target / "reports" / "statistics.json").read_text())["features"] == report["features"]
    assert downloaded.returncode == 0, downloaded.stderr
    pngs = sorted(p.name for p in (tmp_path / "cli" / job_id / "reports").glob("*.png"))
    assert pngs == ["statistics-age.png", "statistics-bmi.png", "statistics-weight.png"], downloaded.stderr
