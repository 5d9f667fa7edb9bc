"""flctl's own options (--version, --quiet, shell completion) and the admin-kit check every admin command shares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def _flctl_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`flctl ARGS` in a fresh interpreter, as a shell would start it."""
    return subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'flctl'; "
                           "from flctl.console.cli.app import main; main()", *args],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_version_prints_the_distribution_version(flctl):
    """`flctl --version` prints `flctl X.Y.Z` (the installed distribution's version) and exits 0."""
    from importlib.metadata import version

    result = flctl("--version")

    assert result.code == 0
    assert result.stdout == f"flctl {version('flctl')}\n"


def test_version_imports_no_command_group():
    """`flctl --version` builds no group and loads neither rich nor grpc."""
    from .test_cli_startup import _modules_after

    code, modules = _modules_after(["--version"])

    assert code == 0
    assert not any(m.split(".")[0] in ("rich", "grpc") or m.startswith("flctl.console.cli.job") for m in modules)


def test_show_completion_prints_a_bash_script(flctl):
    """`flctl --show-completion bash` prints the bash completion script that calls flctl back."""
    result = flctl("--show-completion", "bash")

    assert result.code == 0
    assert "_FLCTL_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _flctl_completion flctl" in result.stdout


def test_show_completion_refuses_an_unknown_shell(flctl):
    """An unsupported shell is bad input: exit 2 and the shells that are supported."""
    result = flctl("--show-completion", "tcsh")

    assert result.code == 2
    assert "shell 'tcsh' is not supported; use one of bash, zsh, fish, powershell, pwsh" in result.stderr


@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("flctl jo", "1", "job"),
    ("flctl job dow", "2", "download"),
    ("flctl --ver", "1", "--version"),
])
def test_completion_answers_through_the_lazy_groups(words, cword, expected):
    """What the installed bash script asks (COMP_WORDS, COMP_CWORD) is answered, sub-groups included."""
    result = _flctl_process(env={"_FLCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword})

    assert result.returncode == 0, result.stderr
    assert expected in result.stdout.split()


def test_install_completion_writes_the_script_under_home(tmp_path: Path):
    """`flctl --install-completion bash` writes ~/.bash_completions/flctl.sh and sources it from ~/.bashrc."""
    result = _flctl_process("--install-completion", "bash", env={"HOME": str(tmp_path)})

    assert result.returncode == 0, result.stderr
    assert "_FLCTL_COMPLETE=complete_bash" in (tmp_path / ".bash_completions" / "flctl.sh").read_text()
    assert f"source '{tmp_path / '.bash_completions' / 'flctl.sh'}'" in (tmp_path / ".bashrc").read_text()


def test_quiet_silences_information_but_not_results(flctl, local_kits):
    """`flctl --quiet kit verify KIT` prints no success line; its --json result and errors still appear."""
    kit = local_kits.prod_dir / "admin@localhost"

    loud = flctl("kit", "verify", kit)
    quiet = flctl("--quiet", "kit", "verify", kit)
    quiet_json = flctl("-q", "kit", "verify", kit, "--json")
    quiet_error = flctl("-q", "kit", "verify", local_kits.prod_dir / "missing")

    assert (loud.code, quiet.code, quiet_json.code) == (0, 0, 0)
    assert "intact" in loud.stderr
    assert quiet.stderr == "" and quiet.stdout == ""
    assert quiet_json.json()["ok"] is True
    assert quiet_error.code != 0 and "error:" in quiet_error.stderr


def test_quiet_does_not_stick_to_the_next_command(flctl, local_kits):
    """Quiet is per invocation: the next command without --quiet talks again."""
    kit = local_kits.prod_dir / "admin@localhost"

    flctl("--quiet", "kit", "verify", kit)

    assert "intact" in flctl("kit", "verify", kit).stderr


@pytest.mark.parametrize("participant", ["site-1", "localhost"])
@pytest.mark.parametrize("how", ["--kit", "FLCTL_KIT"])
def test_a_site_or_server_kit_where_an_admin_kit_is_needed_is_bad_input(flctl, local_kits, monkeypatch, participant,
                                                                        how):
    """A site or server kit given to an admin command exits 2 naming the kit and asking for an admin's kit."""
    kit = local_kits.prod_dir / participant
    if how == "FLCTL_KIT":
        monkeypatch.setenv("FLCTL_KIT", str(kit))
        result = flctl("job", "ls")
    else:
        result = flctl("job", "ls", "--kit", kit)

    assert result.code == 2
    assert str(kit) in result.stderr
    assert "needs an admin's startup kit" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_refuses_a_site_kit_as_bad_input(flctl, local_kits):
    """`flctl console --kit SITE-KIT` exits 2 before any screen opens."""
    result = flctl("console", "--kit", local_kits.prod_dir / "site-1")

    assert result.code == 2
    assert "needs an admin's startup kit" in result.stderr


def test_a_table_to_a_pipe_is_tab_separated_and_never_wrapped(monkeypatch: pytest.MonkeyPatch):
    """Not a terminal: a `# title` line, the header and one line a row, tab-separated, a long cell whole; on a
    terminal the same table is drawn with borders."""
    import io

    from rich.console import Console

    from flctl.console.cli import terminal

    # Prepare
    long = "x" * 300
    piped = io.StringIO()
    monkeypatch.setattr(terminal, "out", Console(file=piped, width=80), raising=False)
    # Execute
    terminal.table(["site", "error"], [("site-1", long), ("site-2", "tab\there")], title="sites")
    # Assert
    assert piped.getvalue() == f"# sites\nsite\terror\nsite-1\t{long}\nsite-2\ttab here\n"
    drawn = io.StringIO()
    monkeypatch.setattr(terminal, "out", Console(file=drawn, width=80, force_terminal=True), raising=False)
    terminal.table(["site", "error"], [("site-1", "none")], title="sites")
    assert "site-1" in drawn.getvalue() and "\t" not in drawn.getvalue()
