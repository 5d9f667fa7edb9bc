"""The options `flctl` itself takes before a command: --version, --quiet and the shell-completion pair."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from flctl.console.cli import completion, terminal

DISTRIBUTION = "flctl"


def version() -> str:
    """This flctl's version: the installed distribution's, else the checkout's pyproject.toml, else 'unknown'."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib

        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def _print_version(ctx: Any, _param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    sys.stdout.write(f"flctl {version()}\n")
    sys.stdout.flush()
    ctx.exit(0)


def _set_quiet(_ctx: Any, _param: Any, value: bool) -> None:
    terminal.set_quiet(bool(value))


_SHELLS = "|".join(completion.SHELLS)


def _options(
    _version: Annotated[bool, typer.Option("--version", is_eager=True, expose_value=False, callback=_print_version,
                                           help="Print flctl's version and exit.")] = False,
    _quiet: Annotated[bool, typer.Option("--quiet", "-q", is_eager=True, expose_value=False, callback=_set_quiet,
                                         help="Print no progress or informational messages (errors, warnings, "
                                              "results and --json output still appear).")] = False,
    _install: Annotated[str | None, typer.Option("--install-completion", metavar=f"[{_SHELLS}]", expose_value=False,
                                                 callback=completion.install,
                                                 help="Install shell completion for the shell named (default: the "
                                                      "current one) and exit.")] = None,
    _show: Annotated[str | None, typer.Option("--show-completion", metavar=f"[{_SHELLS}]", expose_value=False,
                                              callback=completion.show,
                                              help="Print the completion script for the shell named (default: the "
                                                   "current one) and exit.")] = None,
) -> None:
    """Only its signature is used: Typer turns the parameters into the options below."""


def params() -> list[Any]:
    """The click options the top-level group adds to its own, built by Typer from `_options`' signature."""
    from typer.main import _get_params_name_from_function

    return list(_get_params_name_from_function(_options)[0])
