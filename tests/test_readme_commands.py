"""Every `flctl` command the README's shell blocks and the playbooks' comments show is one flctl has, with options
that command takes: a renamed command or option cannot leave the front door out of date. (What the main commands
do is tested where they are: test_quickstart, test_simulate, test_inventory, test_deploy_ssh…)"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer

from flctl.console.cli.app import app

from .conftest import ROOT


def readme_commands() -> list[tuple[str, str]]:
    """(where, command line) for each line of the README's ```bash blocks that runs flctl."""
    found, block = [], False
    for number, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
        if line.startswith("```"):
            block = line.strip() in ("```bash", "```sh", "```shell", "```console") and not block
            continue
        if block and re.match(r"\s*(\S+=\S+\s+)*flctl\s", line):
            found.append((f"README.md:{number}", line))
    return found


def playbook_commands() -> list[tuple[str, str]]:
    """(where, command line) for each comment line in playbooks/ that shows a flctl command."""
    found = []
    for path in sorted((ROOT / "playbooks").rglob("*")):
        if path.suffix not in (".yml", ".yaml", ".md") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.split("#", 1)[1] if path.suffix != ".md" and "#" in line else line
            if path.suffix != ".md" and re.match(r"\s{2,}(\S+=\S+\s+)*flctl ", text):  # an indented command line
                found.append((f"{path.relative_to(ROOT)}:{number}", text.strip()))
                continue
            for match in re.finditer(r"`(flctl [^`]+)`|Run: (flctl \S+( \S+)*)", text):
                found.append((f"{path.relative_to(ROOT)}:{number}", match.group(1) or match.group(2)))
    return found


def problems(line: str) -> list[str]:
    """What in `line` flctl does not have: an unknown command or an option its command does not take."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        words = line.split("#", 1)[0].split()
    words = words[words.index("flctl") + 1:]
    command: Any = typer.main.get_command(app)  # typer's own click: a group has `commands`
    wrong: list[str] = []
    path = ["flctl"]
    options = _options(command)
    takes_value = False
    for word in (w.strip("[]") for w in words):
        if takes_value or not word or word in ("...", "|"):
            takes_value = False
            continue
        default = getattr(command, "default", None)
        own = word.split("=", 1)[0] in _options(command)
        if default is not None and command.commands.get(word) is None and not (word.startswith("-") and own):
            command = command.commands[default]  # `flctl provision P.yml`: the group's default command
            path.append(default)
            options |= _options(command)
            if not word.startswith("-"):
                continue
        if hasattr(command, "commands") and re.fullmatch(r"[a-z][\w.-]*(\|[a-z][\w-]*)*", word):
            names = word.split("|")
            unknown = [n for n in names if command.commands.get(n) is None]
            if unknown:
                wrong.append(f"{' '.join(path)} has no command {', '.join(unknown)}")
                break
            for name in names:
                options |= _options(command.commands[name])
            if len(names) == 1:
                command = command.commands[names[0]]
                path.append(names[0])
            continue
        if word.startswith("-") and re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", word):
            name = word.split("=", 1)[0]
            if name not in options:
                wrong.append(f"{' '.join(path)} takes no option {name}")
            takes_value = "=" not in word and not options[name] if name in options else False
    return wrong


def _options(command: Any) -> dict[str, bool]:
    """Each option of `command` -> whether it is a flag (takes no value)."""
    names = {"--help": True, "-h": True}
    for param in command.params:
        flag = bool(getattr(param, "is_flag", False)) or getattr(param, "count", False)
        names.update(dict.fromkeys([*param.opts, *param.secondary_opts], flag))
    return names


ALL = readme_commands() + playbook_commands()


def test_the_docs_show_commands():
    """The collection itself finds the README's and the playbooks' commands (a broken pattern finds none)."""
    # Prepare / Execute / Assert
    assert len(readme_commands()) > 30 and len(playbook_commands()) > 5


@pytest.mark.parametrize(("where", "line"), ALL, ids=[where for where, _ in ALL])
def test_each_shown_command_exists_with_its_options(where: str, line: str):
    """Each command shown is one flctl has, and every option on it is one that command (or flctl) takes."""
    # Prepare / Execute
    wrong = problems(line)
    # Assert
    assert not wrong, f"{where}: {line.strip()}: {'; '.join(wrong)}"


def test_a_wrong_command_or_option_is_caught():
    """The check itself: an unknown sub-command and an unknown option are both reported."""
    # Prepare / Execute / Assert
    assert problems("flctl job sbmit JOB") == ["flctl job has no command sbmit"]
    assert problems("flctl job submit JOB --wach") == ["flctl job submit takes no option --wach"]
    assert problems("flctl deploy ssh|status INVENTORY --dry-run") == []
