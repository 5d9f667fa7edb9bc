"""`flctl deploy image build -t TAG [--base IMAGE] [--wheelhouse DIR] [--with-torch] [--context-only DIR]`."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption

if TYPE_CHECKING:
    from flctl.cloud.wheelhouse import Platform

SUMMARY = "Build the one container image of the server and the sites (offline, from a wheelhouse)."


def build(
    tag: Annotated[str, typer.Option("--tag", "-t", help="The image's name and tag.")] = "flctl:latest",
    base: Annotated[str, typer.Option(help="The base image: Python 3.11+ and glibc (e.g. python:3.11-slim, or "
                                           "one imported from `mmdebstrap --variant=minbase --include=python3,"
                                           "python3-venv bookworm base.tar`).")] = "python:3.11-slim",
    wheelhouse: Annotated[Path | None, typer.Option(file_okay=False, help="Wheels of flctl and its dependencies "
                                                    "(pip download / pip wheel) [default: built and cached from "
                                                    "this checkout, like `flctl deploy ssh`].")] = None,
    with_torch: Annotated[bool, typer.Option("--with-torch", help="Install torch (CPU) too; the wheelhouse "
                                                                  "must hold it.")] = False,
    context_only: Annotated[Path | None, typer.Option(file_okay=False, help="Write the build context (Containerfile "
                                                      "and wheels/) here and build nothing.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Build the one image for the server and every site: flctl and the job runtime, installed offline.

    The wheels are installed with `pip --no-index`, so no package index is needed; no kit and no key
    is ever put in the image (Compose and Kubernetes mount them). It runs as uid 10001 with a health
    check (`flctl node health`). Built with buildah (chroot isolation), else podman, else docker.
    """
    from flctl.cloud import container_image
    from flctl.cloud import wheelhouse as wheels
    from flctl.cloud.deploy_errors import DeployInputError

    if wheelhouse is not None:
        found = sorted(wheelhouse.glob("*.whl"))
    else:
        cache = wheels.default_cache()
        flctl_wheel = wheels.flctl_wheel(cache)
        found = wheels.wheelhouse(flctl_wheel, _platform(), cache)
    plan = container_image.ImagePlan(tag, base, found, with_torch)
    if context_only is not None:
        context_only.mkdir(parents=True, exist_ok=True)
        container_image.write_context(plan, context_only)
        if json_out:
            terminal.print_json({"tag": tag, "context": str(context_only), "built": False})
            return
        terminal.success(f"wrote the build context to {context_only}")
        return
    tool = container_image.builder()
    if tool is None:
        raise DeployInputError("[builder] none of buildah, podman or docker is installed; install one "
                               "(Debian: apt-get install buildah) or use --context-only")
    with tempfile.TemporaryDirectory(prefix="flctl-image-") as tmp:
        container_image.write_context(plan, Path(tmp))
        done = subprocess.run(container_image.build_command(tool, tag, Path(tmp)), check=False)
    if done.returncode != 0:
        terminal.abort(f"{tool} could not build {tag} (exit {done.returncode}); its output is above",
                       exit_codes.FAILED)
    if json_out:
        terminal.print_json({"tag": tag, "builder": tool, "built": True})
        return
    terminal.success(f"built {tag} with {tool}")


def _platform() -> Platform:
    """This machine's Python, glibc and architecture: the image's when its base is Debian bookworm (3.11, 2.36)."""
    import platform
    import sys

    from flctl.cloud.wheelhouse import Platform

    return Platform(f"{sys.version_info.major}.{sys.version_info.minor}", platform.libc_ver()[1] or "2.36",
                    platform.machine())
