"""Where the wheel cache lives: $FLCTL_WHEEL_CACHE, else $XDG_CACHE_HOME/flctl/wheels, else ~/.cache/flctl/wheels."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.cloud.wheelhouse import default_cache


def test_wheel_cache_honours_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With XDG_CACHE_HOME set (and no FLCTL_WHEEL_CACHE) the wheels go under it."""
    monkeypatch.delenv("FLCTL_WHEEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    assert default_cache() == tmp_path / "xdg" / "flctl" / "wheels"


def test_flctl_wheel_cache_wins_over_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """FLCTL_WHEEL_CACHE names the cache itself, whatever XDG_CACHE_HOME says."""
    monkeypatch.setenv("FLCTL_WHEEL_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    assert default_cache() == tmp_path / "mine"


@pytest.mark.parametrize("xdg", ["", "relative/cache"])
def test_unset_or_relative_xdg_falls_back_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str) -> None:
    """An empty or relative XDG_CACHE_HOME is ignored, as the XDG spec says: ~/.cache/flctl/wheels."""
    monkeypatch.delenv("FLCTL_WHEEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert default_cache() == tmp_path / ".cache" / "flctl" / "wheels"
