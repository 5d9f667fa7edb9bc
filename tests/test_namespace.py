"""One import package, `flctl`: what the wheel installs, and the old `import node.api` of job scripts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT
from .federation import FLCTL


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel .` builds from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("flctl-*.whl"))


def test_the_wheel_installs_one_top_level_package_flctl(wheel: Path) -> None:
    """Nothing named node, cloud, console, provisioner or nvflare lands at the top of site-packages: only flctl (the
    nvflare compat package stays inside it, put on a script's path only for a job that asks)."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"flctl"}
    for part in ("node/site/agent.py", "cloud/local.py", "console/cli/app.py", "provisioner/pki.py", "client.py",
                 "node/wire/proto/flctl.proto", "console/tui/app.tcss", "node/client/legacy/node/api.py",
                 "node/client/compat/nvflare_api/nvflare/client/__init__.py", "node/client/api_extras/lightning.py"):
        assert f"flctl/{part}" in names


def test_the_wheel_entry_point_is_flctls_cli(wheel: Path) -> None:
    """`flctl` the command runs flctl.console.cli.app:main."""
    with zipfile.ZipFile(wheel) as archive:
        entry = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        assert "flctl = flctl.console.cli.app:main" in archive.read(entry).decode()


def _old_job(root: Path) -> Path:
    job = root / "old-job"
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(textwrap.dedent("""
        import numpy as np
        import node.api as fl

        fl.init()
        while fl.running():
            model = fl.receive()
            fl.send(fl.Model(params={"w": np.ones(2, np.float32) * model.round}, num_examples=1))
    """))
    (job / "job.yml").write_text("api_version: 1\nname: old-job\nworkflow: {type: fedavg, args: {rounds: 2}}\n"
                                 "min_sites: 2\napp: {command: [python, train.py]}\n")
    return job


def test_a_script_importing_node_api_still_runs_in_the_simulator_with_a_warning(tmp_path: Path) -> None:
    """`import node.api as fl` in a job script runs unchanged in `flctl simulate`; its log names the new import."""
    out = subprocess.run([FLCTL, "simulate", str(_old_job(tmp_path)), "-n", "2", "-w", str(tmp_path / "ws")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "ws" / "old-job" / "logs" / "site-1.log").read_text()
    assert "'import node.api' is deprecated: use 'import flctl.client as fl'" in log
