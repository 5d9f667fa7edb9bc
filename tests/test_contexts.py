"""Federation contexts (`flctl context add|ls|use|rm`, `--context NAME`): named admin kits in
$XDG_CONFIG_HOME/flctl/config.toml, one current; --kit and FLCTL_KIT still win."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.cloud import federation_contexts as fc

from .federation import Federation, make_federation, running

FLCTL = str(Path(sys.executable).parent / "flctl")


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder of this test's own (the session's is shared by every test)."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("FLCTL_KIT", raising=False)
    monkeypatch.delenv("FLCTL_CONTEXT", raising=False)
    monkeypatch.setenv("FLCTL_POC_WORKSPACE", str(tmp_path / "no-local-federation"))
    return home


def flctl(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, Federation]]:
    """Two provisioned federations: the first running (a server, one site), the second never started."""
    up = make_federation(tmp_path_factory.mktemp("up"), sites=1, name="upfed")
    down = make_federation(tmp_path_factory.mktemp("down"), sites=1, name="downfed")
    with running(up):
        yield up, down


def test_add_ls_use_rm_keep_paths_in_a_private_file(config_home: Path, local_kits) -> None:
    """The first context added is current; `use` switches; `rm` of the current leaves none; the file is 0600 and
    holds paths only, never a key."""
    kit = local_kits.prod_dir / "admin@localhost"
    # Execute
    first = flctl("context", "add", "alpha", kit, "--json")
    second = flctl("context", "add", "beta", kit, "--json")
    used = flctl("context", "use", "beta", "--json")
    listed = flctl("context", "ls")
    removed = flctl("context", "rm", "beta", "--json")
    # Assert
    assert [r.returncode for r in (first, second, used, listed, removed)] == [0] * 5
    assert json.loads(first.stdout)["current"] == "alpha"
    assert json.loads(second.stdout)["current"] == "alpha"  # adding another does not switch
    assert json.loads(used.stdout)["current"] == "beta"
    assert [line.split("\t")[:2] for line in listed.stdout.splitlines()[1:]] == [["", "alpha"], ["*", "beta"]]
    assert json.loads(removed.stdout) == {"current": None, "contexts": [
        {"name": "alpha", "kit": str(kit), "current": False}]}
    config = config_home / "flctl" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in config.read_text() and str(kit) in config.read_text()


def test_bad_names_missing_contexts_and_wrong_kits_exit_2(config_home: Path, local_kits) -> None:
    """Each mistake is one sentence and exit 2: a name that is not allowed, a context that does not exist (those
    that do are listed), a site's kit, and a config.toml with a key flctl does not know (the file named)."""
    admin, site = local_kits.prod_dir / "admin@localhost", local_kits.prod_dir / "site-1"
    flctl("context", "add", "alpha", admin)
    # Execute
    outcomes = [flctl("context", "add", "b ad", admin), flctl("context", "use", "nope"),
                flctl("job", "ls", "--context", "nope"), flctl("site", "ls", FLCTL_CONTEXT="nope"),
                flctl("context", "add", "site", site)]
    (config_home / "flctl" / "config.toml").write_text('current = "alpha"\nbogus = 1\n')
    outcomes.append(flctl("context", "ls"))
    # Assert
    assert [r.returncode for r in outcomes] == [2] * 6, [r.stderr for r in outcomes]
    assert "context name 'b ad' is not allowed" in outcomes[0].stderr
    assert all("no context 'nope' (contexts: alpha)" in r.stderr for r in outcomes[1:3])
    assert "no context 'nope' (contexts: alpha)" in outcomes[3].stderr
    assert "is a site's kit; a context acts as an admin" in outcomes[4].stderr
    assert f"{config_home / 'flctl' / 'config.toml'}: 'bogus' is not a key" in outcomes[5].stderr
    assert all("Traceback" not in r.stderr for r in outcomes)


def test_commands_act_as_the_chosen_context_and_kit_wins(config_home: Path,
                                                         live: tuple[Federation, Federation]) -> None:
    """The current context is what `site ls` talks to; --context and FLCTL_CONTEXT choose another (the server
    that is down: exit 3, so it was asked); --kit and FLCTL_KIT win over every context."""
    up, down = live
    flctl("context", "add", "up", up.admin_kit)
    flctl("context", "add", "down", down.admin_kit)
    # Execute
    current = flctl("site", "ls", "--json")
    chosen = flctl("site", "ls", "--json", "--context", "down")
    by_env = flctl("job", "ls", "--json", FLCTL_CONTEXT="down")
    kit_wins = flctl("site", "ls", "--json", "--context", "down", "--kit", up.admin_kit)
    env_kit_wins = flctl("site", "ls", "--json", "--context", "down", FLCTL_KIT=str(up.admin_kit))
    # Assert
    assert current.returncode == 0, current.stderr
    assert [s["name"] for s in json.loads(current.stdout)] == ["site-1"]
    assert (chosen.returncode, by_env.returncode) == (3, 3)
    assert f"127.0.0.1:{down.port}" in chosen.stderr or f"localhost:{down.port}" in chosen.stderr
    assert (kit_wins.returncode, env_kit_wins.returncode) == (0, 0)


def test_the_file_round_trips_names_and_paths_that_need_escaping(config_home: Path, tmp_path: Path) -> None:
    """A kit path with quotes, backslashes and non-ASCII letters reads back exactly (TOML basic strings)."""
    # Prepare
    odd = tmp_path / 'kits "quoted" \\ här'
    contexts = fc.Contexts({"a.b_c-1": odd, "z": tmp_path}, current="z")
    # Execute
    fc.save(contexts)
    back = fc.load()
    # Assert
    assert back == contexts
