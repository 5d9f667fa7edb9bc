"""The local federation remembers its folder: after `flctl poc prepare -w DIR`, the commands that default to the
local federation find DIR without FLCTL_POC_WORKSPACE; `flctl poc clean` forgets it."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.cloud.local_context import config_dir
from flctl.console.cli.admin_kit import resolve_kit

from .conftest import run_flctl


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder of this test's own, and no workspace or kit named in the environment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("FLCTL_POC_WORKSPACE", raising=False)
    monkeypatch.delenv("FLCTL_KIT", raising=False)
    return tmp_path / "config"


def test_prepare_remembers_the_folder_and_clean_forgets_it(tmp_path: Path, config_home: Path) -> None:
    """poc status and the job commands' admin kit find the prepared folder; after clean, the default is back."""
    workspace = tmp_path / "fed"
    assert run_flctl("poc", "prepare", "-n", "1", "-w", workspace, "--json").code == 0
    assert (config_home / "flctl" / "poc-workspace").read_text() == f"{workspace}\n"
    status = run_flctl("poc", "status", "--json")
    assert status.code == 0, status.stderr
    assert status.json()["workspace"] == str(workspace)
    assert resolve_kit(None) == workspace / "kits" / "poc" / "prod_00" / "admin@localhost"
    assert run_flctl("poc", "clean", "--json").json() == {"removed": str(workspace)}
    assert not (config_home / "flctl" / "poc-workspace").exists()
    assert run_flctl("poc", "status", "--json").stderr.count(str(tmp_path / "data" / "flctl" / "poc")) == 1


def test_the_environment_variable_wins_over_the_remembered_folder(tmp_path: Path, config_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """FLCTL_POC_WORKSPACE names another folder: the commands use it, not the remembered one."""
    assert run_flctl("poc", "prepare", "-n", "1", "-w", tmp_path / "fed", "--json").code == 0
    monkeypatch.setenv("FLCTL_POC_WORKSPACE", str(tmp_path / "other"))
    result = run_flctl("poc", "status", "--json")
    assert result.code == 2
    assert f"no local federation in {tmp_path / 'other'}" in result.stderr


def test_a_remembered_folder_that_was_removed_is_ignored(tmp_path: Path, config_home: Path) -> None:
    """A folder deleted by hand is not a federation any more: the default folder is used."""
    config_dir().mkdir(parents=True)
    (config_dir() / "poc-workspace").write_text(f"{tmp_path / 'gone'}\n")
    result = run_flctl("poc", "status", "--json")
    assert result.code == 2
    assert f"no local federation in {tmp_path / 'data' / 'flctl' / 'poc'}" in result.stderr
