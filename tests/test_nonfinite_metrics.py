"""A diverged loss is a NaN, an exploding gradient an infinity: a job whose script reports them runs to its end, on a
real federation and in a simulation. Before, the site's Report call failed at the server (SQLite keeps a NaN as
NULL, the column was NOT NULL) and the site's answer never reached the workflow (the link wrote NaN as null and
the job process refused it), so the round timed out and the job failed. The CLI's JSON and metrics.json are strict
JSON (null for such a value, never Python's `NaN` token); its tables show nan and inf."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flctl.console.cli.terminal import strict_json

from .federation import FLCTL, Federation, make_federation
from .job_folders import job_folder

SCRIPT = """\
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    fl.log("logged_loss", float("nan"), step=0)
    fl.send(fl.Model(params={"w": np.ones(3, np.float32)}, num_examples=1,
                     metrics={"loss": float("nan"), "grad_norm": float("inf"), "acc": 0.5}))
"""


def strict(text: str) -> Any:
    """`text` parsed as strict JSON: a NaN or Infinity token fails."""
    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = make_federation(tmp_path_factory.mktemp("nonfinite"), sites=1)
    try:
        federation.start("localhost")
        federation.start("site-1")
        federation.wait_online(["site-1"], timeout=60)
        yield federation
    finally:
        federation.stop_all()


def diverging_job(root: Path) -> Path:
    return job_folder(root, "diverging", rounds=2, round_timeout_s=60, script=SCRIPT)


def test_a_job_reporting_nan_and_infinite_metrics_finishes_and_shows_them(fed: Federation, tmp_path: Path) -> None:
    # Execute
    done = fed.flctl("job", "submit", diverging_job(tmp_path), "--watch", "--json")
    job_id = strict(done.stdout)["id"]
    shown = fed.flctl("job", "show", job_id, "--json")
    values = fed.flctl("job", "metrics", job_id, "--json")
    table = fed.flctl("job", "metrics", job_id)
    downloaded = fed.flctl("job", "download", job_id, "-o", tmp_path / "out", "--json")
    # Assert
    assert done.returncode == 0, done.stdout + done.stderr
    assert strict(shown.stdout)["status"] == "FINISHED"
    assert strict(shown.stdout)["last_metrics"]["site-1"] == {"loss": None, "grad_norm": None, "acc": 0.5,
                                                            "logged_loss": None}
    rows = strict(values.stdout)
    assert {(r["round"], r["name"]): r["value"] for r in rows} == {
        (0, "logged_loss"): None, (0, "loss"): None, (0, "grad_norm"): None, (0, "acc"): 0.5,
        (1, "logged_loss"): None, (1, "loss"): None, (1, "grad_norm"): None, (1, "acc"): 0.5}
    header, *lines = table.stdout.splitlines()[1:]  # after the `# metrics of job` title line
    cells = [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]
    assert table.returncode == 0 and len(cells) == 2, table.stdout
    assert all((c["loss"], c["grad_norm"], c["acc"], c["logged_loss"]) == ("nan", "inf", "0.5", "nan") for c in cells)
    saved = strict((Path(strict(downloaded.stdout)["path"]) / "metrics.json").read_text())
    assert {r["value"] for r in saved if r["name"] in ("loss", "grad_norm")} == {None}


def test_a_simulated_job_reporting_them_finishes_with_strict_metrics_json(tmp_path: Path) -> None:
    out = subprocess.run([FLCTL, "simulate", str(diverging_job(tmp_path)), "-n", "1", "-w", str(tmp_path / "ws"),
                          "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert strict(out.stdout)["status"] == "FINISHED"
    saved = strict((tmp_path / "ws" / "diverging" / "metrics.json").read_text())
    assert {r["value"] for r in saved if r["name"] == "loss"} == {None}
    assert {r["value"] for r in saved if r["name"] == "acc"} == {0.5}


def test_strict_json_makes_every_non_finite_number_null() -> None:
    data = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": (2, "x"), "e": None, "f": 3}
    assert strict_json(data) == {"a": None, "b": [1.5, None, {"c": None}], "d": [2, "x"], "e": None, "f": 3}
