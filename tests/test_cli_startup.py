"""What a command costs to start: each group is built when named, and JSON output never imports rich."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import ROOT


def _modules_after(argv: list[str]) -> tuple[int, list[str]]:
    """Run `flctl ARGV` in a fresh interpreter; its exit code and the modules it imported."""
    code = (
        "import json, sys\n"
        "from flctl.console.cli.app import main\n"
        f"sys.argv = ['flctl', *{argv!r}]\n"
        "try:\n"
        "    main()\n"
        "    code = 0\n"
        "except SystemExit as exc:\n"
        "    code = exc.code if isinstance(exc.code, int) else 1\n"
        "print(json.dumps([code, sorted(sys.modules)]), file=sys.__stdout__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return found[0], found[1]


def test_a_command_builds_only_its_own_group():
    """`flctl site --help` imports the site commands and none of the other groups'."""
    code, modules = _modules_after(["site", "--help"])

    assert code == 0
    assert "flctl.console.cli.site.ls" in modules
    for other in ("flctl.console.cli.job.submit", "flctl.console.cli.deploy.ssh", "flctl.console.cli.provision.build",
                  "flctl.console.cli.poc.start", "flctl.console.cli.kit.verify"):
        assert other not in modules


def test_help_lists_every_group_in_order(flctl):
    """The top-level help names the five commands, then every group, in registration order."""
    result = flctl("--help")

    names = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert result.code == 0
    assert names == ["quickstart", "simulate", "console", "preflight", "play", "provision", "kit", "node", "job",
                     "audit", "site", "certs", "poc", "context", "deploy"]


def test_top_level_help_builds_no_group():
    """`flctl --help` lists every group from its summary: no group's commands, no cloud SDK, no pydantic."""
    code, modules = _modules_after(["--help"])

    assert code == 0
    built = [m for m in modules if m.startswith(("flctl.console.cli.job.", "flctl.console.cli.deploy.",
                                                 "flctl.console.cli.kit.", "flctl.cloud.", "pydantic"))]
    assert built == []


def test_a_group_summary_is_what_the_group_says(flctl):
    """The summaries `--help` lists match each group's own help (a group's help changed alone would drift)."""
    from flctl.console.cli.app import SUMMARIES

    for name, summary in SUMMARIES.items():
        result = flctl(name, "--help")
        own = " ".join(result.stdout.split("Options:")[0].split("\n\n", 1)[1].split())
        assert result.code == 0
        assert own.startswith(summary[:-1]), (name, own)


def test_a_mistyped_group_is_suggested(flctl):
    """An unknown command exits 2 and suggests the group it resembles, although that group was never built."""
    result = flctl("jbo")

    assert result.code == 2
    assert "Did you mean 'job'?" in result.stderr


def test_json_only_commands_do_not_import_rich(local_kits):
    """A command that prints only JSON (`flctl kit show KIT --json`) never loads rich."""
    code, modules = _modules_after(["kit", "show", str(local_kits.prod_dir / "admin@localhost"), "--json"])

    assert code == 0
    assert not any(m == "rich" or m.startswith("rich.") for m in modules)
