"""Shared fixtures: a provisioned workspace and a way to run `flctl` in-process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from flctl.provisioner.build import ProvisionResult, provision
from flctl.provisioner.project_loader import load_project

# CI explores the same examples every run (no flaky discoveries); locally hypothesis roams freely.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
LOCAL_PROJECT = ROOT / "playbooks" / "projects" / "local.yml"


@pytest.fixture(autouse=True, scope="session")
def _private_config_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's flctl settings (~/.config/flctl: the remembered local federation): every
    test, and every flctl it starts, gets a config folder of the session's own."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_flctl(*args: str | Path) -> CliResult:
    """Run `flctl ARGS` through the real entry point, in this process."""
    from flctl.console.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["flctl", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def flctl() -> Any:
    return run_flctl


@pytest.fixture
def write_project(tmp_path: Path) -> Any:
    """Write a project.yml from text and return its path."""

    def write(text: str, name: str = "project.yml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def local_kits(tmp_path_factory: pytest.TempPathFactory) -> ProvisionResult:
    """The local playbook project provisioned once (server, two sites, one admin); do not modify it."""
    workspace = tmp_path_factory.mktemp("ws")
    return provision(load_project(LOCAL_PROJECT).project, workspace)


@pytest.fixture
def kit_copy(local_kits: ProvisionResult, tmp_path: Path) -> Any:
    """A private copy of one participant's kit, safe to tamper with."""

    def copy(name: str) -> Path:
        target = tmp_path / "kits" / name
        shutil.copytree(local_kits.prod_dir / name, target, symlinks=True)
        return target

    return copy


@pytest.fixture(scope="session")
def wheel_cache() -> Path:
    """One wheel cache for every session on this machine: flctl's wheel by source digest, dependencies by platform."""
    path = Path(os.environ.get("FLCTL_WHEEL_CACHE", Path(tempfile.gettempdir()) / "flctl-test-wheel-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def host_venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv folder (inventory `venv_root`) the deployment tests' simulated hosts share, so the offline
    install of the wheels runs once per session."""
    return tmp_path_factory.mktemp("host-venvs")


@pytest.fixture(autouse=True, scope="session")
def _interruptible_children() -> None:
    """The Ctrl-C tests send SIGINT to a flctl they start: a run of the suite started in the background of a
    non-interactive shell (nohup, `&`) begins with SIGINT ignored, and every child would inherit that and never
    see Ctrl-C. Such a run takes SIGINT back, so its children start with it as they would from a terminal."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

