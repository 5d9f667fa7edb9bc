"""The wheels a host installs offline: this very flctl, built once per source tree, and its dependencies.

Both are cached (in $FLCTL_WHEEL_CACHE, else $XDG_CACHE_HOME/flctl/wheels, else ~/.cache/flctl/wheels):
the flctl wheel under the digest of its sources, the dependency wheelhouse under the target Python, platform and
requirements. A cached wheelhouse is resolved offline first, so only the first build of a given
set needs the package index.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from flctl.cloud.deploy_errors import LocalBuildFailed

PACKAGES = ("flctl", "console", "provisioner", "cloud", "node")
"""What the wheel is built from: `flctl/` (its own modules, and links to the four code folders) and those folders."""
SOURCE_FILES = ("pyproject.toml", "README.md")


@dataclass(frozen=True)
class Platform:
    """What the host's Python accepts: `3.11`, glibc `2.36`, `x86_64`."""

    python: str
    glibc: str
    machine: str

    @property
    def key(self) -> str:
        return f"py{self.python}-glibc{self.glibc}-{self.machine}"


def default_cache() -> Path:
    """$FLCTL_WHEEL_CACHE, else flctl/wheels under $XDG_CACHE_HOME (when set to an absolute path), else ~/.cache."""
    env = os.environ.get("FLCTL_WHEEL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path("~/.cache").expanduser()  # the spec ignores relative
    return base / "flctl" / "wheels"


def source_root() -> Path:
    """The checkout flctl runs from; LocalBuildFailed when it was installed without its sources."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise LocalBuildFailed("flctl was not run from a source checkout, so it cannot build the wheel hosts "
                               "install; run `flctl deploy` from a clone of flctl")
    return root


def _source_files(root: Path) -> list[Path]:
    files = [root / name for name in SOURCE_FILES if (root / name).is_file()]
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith((".pyc", ".orig")):
                files.append(path)
    return files


def source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def flctl_wheel(cache: Path, root: Path | None = None) -> Path:
    """The wheel of the flctl in `root`, built with `pip wheel --no-deps` once per source digest."""
    root = root or source_root()
    target = cache / "flctl" / source_digest(root)
    found = sorted(target.glob("flctl-*.whl")) if target.is_dir() else []
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(prefix="flctl-wheel-") as tmp:
        src = Path(tmp) / "src"
        for path in _source_files(root):  # a copy, so the build leaves nothing in the checkout
            dest = src / _installed_as(path.relative_to(root))
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        out = Path(tmp) / "out"
        _pip(["wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)], "building the flctl wheel")
        wheel = next(out.glob("flctl-*.whl"))
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, target / wheel.name)
        return target / wheel.name


def _installed_as(relative: Path) -> Path:
    """Where a source file goes in the copy the wheel is built from: a code folder's files under `flctl/` (in
    the checkout, `flctl/node` is a link to `node/`; the copy holds real files, so the wheel does too)."""
    if relative.parts[0] in PACKAGES[1:]:
        return Path("flctl") / relative
    return relative


def requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel without extras markers."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return sorted(line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("Requires-Dist:") and "extra ==" not in line)


def wheelhouse(wheel: Path, platform: Platform, cache: Path) -> list[Path]:
    """Every wheel a host of `platform` needs to install `wheel` offline, flctl's own included."""
    reqs = requirements(wheel)
    key = hashlib.sha256(("\n".join(reqs) + platform.key).encode()).hexdigest()[:16]
    house = cache / "deps" / f"{platform.key}-{key}"
    house.mkdir(parents=True, exist_ok=True)
    resolved = house / ".resolved"  # written once pip found every requirement there
    if resolved.is_file():
        return [wheel, *sorted(house.glob("*.whl"))]
    target = ["--only-binary=:all:", "--python-version", platform.python]
    for tag in platform_tags(platform):
        target += ["--platform", tag]
    offline = ["download", "-q", "--no-index", "--find-links", str(house), "-d", str(house), *target, *reqs]
    if _pip(offline, "", check=False) != 0:
        _pip(["download", "-q", "-d", str(house), *target, *reqs], "downloading the dependency wheels")
    resolved.write_text("\n".join(reqs) + "\n")
    return [wheel, *sorted(house.glob("*.whl"))]


def platform_tags(platform: Platform) -> list[str]:
    """manylinux tags from the host's glibc down to 2.17 (pip does not expand them itself), then plain linux."""
    major, _, minor = platform.glibc.partition(".")
    arch = platform.machine
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(int(minor or 0), 16, -1)] if major == "2" else []
    return [*tags, f"manylinux2014_{arch}", f"linux_{arch}"]


def _pip(args: list[str], what: str, check: bool = True) -> int:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 and check:
        lines = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING" not in line]
        raise LocalBuildFailed(f"{what} failed: {lines[-1] if lines else 'pip exited ' + str(proc.returncode)}; "
                               "check that this machine reaches the package index once")
    return proc.returncode
