"""Shell completion with Typer's own machinery: `flctl --show-completion [SHELL]`, `--install-completion [SHELL]`.

Typer's built-in options need the shell detected from the parent process (a flag that takes no
value); flctl's take the shell by name and detect it only when none is given. Everything is
imported when an option is used or the shell asks for completions, so `flctl --help` pays nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flctl.console.cli import exit_codes
from flctl.console.cli.terminal import abort

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
DETECT = "detect"  # the value an option gets when given with no shell


OPTIONS = ("--show-completion", "--install-completion")


def with_default_shell(args: list[str]) -> list[str]:
    """`flctl --show-completion` with no shell named gets DETECT as its value (the parser needs one)."""
    for i, arg in enumerate(args):
        if arg in OPTIONS and (i + 1 == len(args) or args[i + 1].startswith("-")):
            return [*args[:i + 1], DETECT, *args[i + 1:]]
        if not arg.startswith("-"):
            break
    return args


def complete_var(prog_name: str) -> str:
    """The environment variable the completion script sets when it asks for completions."""
    return "_{}_COMPLETE".format(prog_name.replace("-", "_").upper())


def prepare_if_completing(prog_name: str) -> None:
    """Register Typer's completion classes when the shell is asking for completions (else do nothing)."""
    if os.environ.get(complete_var(prog_name)):
        from typer._completion_classes import completion_init

        completion_init()


def _shell(value: str, option: str) -> str:
    if value == DETECT:
        from typer._completion_shared import _get_shell_name

        detected = _get_shell_name()
        if detected is None:
            abort(f"cannot tell which shell this is; name it: flctl {option} {{{'|'.join(SHELLS)}}}",
                  exit_codes.BAD_INPUT)
        value = detected
    if value not in SHELLS:
        abort(f"{option}: shell {value!r} is not supported; use one of {', '.join(SHELLS)}", exit_codes.BAD_INPUT)
    return value


def _prog_name(_ctx: Any) -> str:
    """The installed command's name (pyproject's [project.scripts]), whatever started this interpreter."""
    return "flctl"


def show(ctx: Any, _param: Any, value: str | None) -> None:
    """Print the completion script for the shell and exit 0."""
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_classes import completion_init
    from typer._completion_shared import get_completion_script

    completion_init()
    prog = _prog_name(ctx)
    shell = _shell(value, "--show-completion")
    sys.stdout.write(get_completion_script(prog_name=prog, complete_var=complete_var(prog), shell=shell) + "\n")
    sys.stdout.flush()
    ctx.exit(0)


def install(ctx: Any, _param: Any, value: str | None) -> None:
    """Add the completion script to the shell's start-up file and exit 0."""
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_classes import completion_init
    from typer._completion_shared import install as typer_install

    from flctl.console.cli import terminal

    completion_init()
    prog = _prog_name(ctx)
    shell, path = typer_install(shell=_shell(value, "--install-completion"), prog_name=prog,
                                complete_var=complete_var(prog))
    terminal.success(f"{shell} completion installed in {path}; it takes effect in a new terminal")
    ctx.exit(0)
