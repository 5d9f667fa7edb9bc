"""The one image for the server and the sites, built offline from a wheelhouse, with no kit and no key in it.

The build context is a Containerfile and `wheels/` (this flctl's wheel and its dependencies', from
flctl.cloud.wheelhouse or a folder of wheels the user made with `pip download`/`pip wheel`); the image installs
them with `pip --no-index` into /opt/flctl/venv, so the build needs no registry but the base image's. The base is
any image with Python 3.11+ and glibc (`python:3.11-slim`), or one made from Debian packages with mmdebstrap
(`base_tarball_command`) where no image registry is reachable. It runs as uid 10001, its root filesystem can be
read-only (the kit is mounted at /kit, the workspace at /workspace), and its health check is `flctl node health`.
The builder is buildah (`--isolation chroot`: no OCI runtime needed), else podman, else docker.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from flctl.cloud.deploy_errors import DeployInputError

UID = 10001
BUILDERS = ("buildah", "podman", "docker")
DEBIAN_SUITE = "bookworm"  # Python 3.11, glibc 2.36


@dataclass(frozen=True)
class ImagePlan:
    """What to build: the tag, the base, the wheels and whether torch (CPU) goes in."""

    tag: str
    base: str
    wheels: list[Path]
    torch: bool = False


def containerfile(plan: ImagePlan) -> str:
    """The Containerfile of `plan` (HEALTHCHECK needs the docker format: buildah and podman `--format docker`)."""
    extra = " torch" if plan.torch else ""
    return f"""# Written by `flctl deploy image build`: flctl and its job runtime, installed offline; no kit, no key.
FROM {plan.base}
COPY wheels/ /opt/flctl/wheels/
RUN python3 -m venv /opt/flctl/venv \\
 && /opt/flctl/venv/bin/pip install --no-cache-dir --no-index --find-links /opt/flctl/wheels flctl{extra} \\
 && rm -rf /opt/flctl/wheels \\
 && mkdir -p /kit/startup /kit/local /workspace \\
 && chown {UID}:{UID} /workspace && chmod 0777 /workspace
ENV PATH=/opt/flctl/venv/bin:/usr/local/bin:/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/workspace
USER {UID}:{UID}
WORKDIR /workspace
VOLUME /workspace
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \\
  CMD ["flctl", "node", "health", "/kit", "--workspace", "/workspace"]
ENTRYPOINT ["flctl"]
CMD ["--help"]
"""


def context_files(plan: ImagePlan) -> dict[str, Path | bytes]:
    """The build context: relative path -> bytes, or the wheel file to copy there."""
    names = [wheel.name for wheel in plan.wheels]
    if not any(name.startswith("flctl-") for name in names):
        raise DeployInputError("[--wheelhouse] holds no flctl wheel; build one with `pip wheel --no-deps .` "
                               "in a flctl checkout")
    if plan.torch and not any(name.startswith("torch-") for name in names):
        raise DeployInputError("[--with-torch] the wheelhouse holds no torch wheel; add the CPU build: pip "
                               "download torch --index-url https://download.pytorch.org/whl/cpu -d WHEELHOUSE")
    files: dict[str, Path | bytes] = {"Containerfile": containerfile(plan).encode()}
    files |= {f"wheels/{wheel.name}": wheel for wheel in plan.wheels}
    return files


def write_context(plan: ImagePlan, folder: Path) -> Path:
    """Write the build context into `folder` (wheels hard-linked where they can be)."""
    for rel, content in context_files(plan).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            try:
                path.hardlink_to(content)
            except OSError:
                shutil.copy2(content, path)
    return folder / "Containerfile"


def builder() -> str | None:
    """The first of buildah, podman, docker on PATH; None when there is none."""
    return next((tool for tool in BUILDERS if shutil.which(tool)), None)


def build_command(tool: str, tag: str, context: Path) -> list[str]:
    """The command that builds the image of `context` with `tool`."""
    if tool == "buildah":
        return ["buildah", "build", "--isolation", "chroot", "--format", "docker", "-t", tag, str(context)]
    if tool == "podman":
        return ["podman", "build", "--format", "docker", "-t", tag, str(context)]
    return ["docker", "build", "-t", tag, str(context)]


def base_tarball_command(tarball: Path, suite: str = DEBIAN_SUITE) -> list[str]:
    """mmdebstrap: a minimal Debian with Python 3 and venv, as a tarball (`buildah|podman import` makes it a base)."""
    return ["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", suite,
            str(tarball)]
