"""The image (`flctl deploy image build`) and the federation run from it.

Building takes minutes (a Debian base with mmdebstrap, then the image), so these run only with
FLCTL_IMAGE_TESTS=1 (and buildah, podman and mmdebstrap installed: `bash scripts/setup.sh --all`). Where an OCI
runtime cannot start a container (this machine: crun and runc are refused setrlimit), the compose run is skipped
saying so, and the image is proved in buildah's chroot containers instead: the server and two sites from the
image, their kits bound read-only, hello-numpy submitted with `flctl job submit` and finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.cloud import container_image
from flctl.cloud.compose_file import compose
from flctl.cloud.project_kits import load_project_kits
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml
from tests.federation import FLCTL, free_port

ROOT = Path(__file__).resolve().parent.parent
ENABLED = os.environ.get("FLCTL_IMAGE_TESTS") == "1"
TAG = "localhost/flctl:test"
BASE = "localhost/flctl-base:bookworm"


def runtime_refusal() -> str | None:
    """Why podman cannot start a container here (None when it can): it runs /bin/true from this machine's root."""
    if not shutil.which("podman"):
        return "podman is not installed"
    done = subprocess.run(["podman", "run", "--rm", "--network", "none", "--rootfs", "/", "/bin/true"],
                          capture_output=True, text=True, timeout=120, check=False)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[-1]


def run(*args: str | Path, timeout: float = 900) -> str:
    done = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args[:3]}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image, built from a Debian base made with mmdebstrap (or $FLCTL_TEST_BASE_IMAGE) and this checkout."""
    if not ENABLED:
        pytest.skip("builds a base and an image (minutes): set FLCTL_IMAGE_TESTS=1")
    missing = [tool for tool in ("buildah", "podman", "mmdebstrap") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: bash scripts/setup.sh --all")
    tmp = tmp_path_factory.mktemp("image")
    base = os.environ.get("FLCTL_TEST_BASE_IMAGE")
    if not base:
        tarball = tmp / "base.tar"
        run(*container_image.base_tarball_command(tarball))
        run("podman", "import", tarball, BASE)
        base = BASE
    run(FLCTL, "deploy", "image", "build", "-t", TAG, "--base", base)
    return TAG


def test_the_image_holds_flctl_and_no_kit_and_runs_as_10001(image: str) -> None:
    """flctl and numpy import; /kit is empty; the user is 10001; no key file anywhere."""
    ctr = run("buildah", "from", image).strip()
    try:
        out = run("buildah", "run", "--isolation", "chroot", ctr, "--", "sh", "-c",
                  "id -u; flctl --version; python3 -c 'import numpy'; find /kit -type f | wc -l; "
                  "find / -xdev \\( -name '*.key' -o -name signature.json \\) 2>/dev/null | wc -l")
        assert out.split() == ["10001", "flctl", "0.1.0", "0", "0"]
    finally:
        run("buildah", "rm", ctr)


@pytest.fixture
def kits(tmp_path: Path) -> Path:
    port = free_port()
    text = (f"api_version: 1\nname: fedimg\nserver: {{name: fl-server, org: hub, port: {port}}}\nsites:\n"
            "  - {name: site-1, org: a}\n  - {name: site-2, org: b}\n"
            "admins:\n  - {name: admin@hub.org, org: hub, role: project_admin}\n"
            "heartbeat: {interval_s: 0.5, timeout_s: 5}\n")
    prod = provision(project_from_document(parse_yaml(text, "project.yml")).project, tmp_path / "ws").prod_dir
    if os.getuid() == 0:  # the containers run as 10001, which must read the kits (the compose .env's FLCTL_UID)
        for path in [prod, *prod.rglob("*")]:
            os.chown(path, 10001, 10001)
    return prod


def _own(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        os.chown(path, 10001, 10001)
    return path


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # each started in its own session: its group is ours alone
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def chroot_federation(image: str, prod: Path, tmp: Path) -> Iterator[list[str]]:
    """The server and the sites, each in a buildah chroot container of `image` run with its compose service's
    command, kit bound read-only at /kit; `fl-server` is 127.0.0.1 (chroot containers share this machine's
    network). Yields the `buildah run` prefix that runs a command in one more container of the image."""
    services = compose(load_project_kits(prod))["services"]
    hosts = tmp / "hosts"
    hosts.write_text("127.0.0.1 localhost fl-server\n")
    containers: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []

    def container(*binds: str) -> list[str]:
        containers.append(run("buildah", "from", image).strip())
        return ["buildah", "run", "--isolation", "chroot", "--network", "host", "--no-hosts",
                "-v", f"{hosts}:/etc/hosts:ro",
                *(arg for bind in binds for arg in ("-v", bind)), containers[-1], "--"]

    try:
        for name, participant in (("fl-server", "fl-server"), ("site-1", "site-1"), ("site-2", "site-2")):
            cmd = container(f"{prod / participant}:/kit:ro", f"{_own(tmp / ('ws-' + name))}:/workspace")
            with (tmp / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen([*cmd, "flctl", *services[name]["command"]], stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        yield container(f"{prod / 'admin@hub.org'}:/kit:ro", f"{ROOT / 'playbooks/jobs/hello-numpy'}:/job:ro")
        probe = container(f"{prod / 'site-1'}:/kit:ro")  # the image's health check, as a site's container runs it
        ready = subprocess.run([*probe, "flctl", "node", "health", "/kit"], capture_output=True, text=True,
                               timeout=120, check=False)
        assert ready.returncode == 0, ready.stderr
    finally:
        _stop(procs)
        for ctr in containers:
            subprocess.run(["buildah", "rm", ctr], capture_output=True, timeout=60, check=False)


def test_the_image_runs_the_federation_and_hello_numpy_finishes(image: str, kits: Path, tmp_path: Path) -> None:
    """Server and two sites from the image (buildah chroot containers); `flctl job submit --watch` ends FINISHED."""
    with chroot_federation(image, kits, tmp_path) as admin:
        deadline = time.monotonic() + 120
        while True:
            listed = subprocess.run([*admin, "flctl", "site", "ls", "--kit", "/kit", "--json"], capture_output=True,
                                    text=True, timeout=120, check=False)
            online = {s["name"] for s in json.loads(listed.stdout or "[]") if s.get("online")} \
                if listed.returncode == 0 else set()
            if {"site-1", "site-2"} <= online:
                break
            assert time.monotonic() < deadline, f"sites not online: {listed.stderr[-500:]}"
            time.sleep(2)
        done = subprocess.run([*admin, "flctl", "job", "submit", "/job", "--kit", "/kit", "--watch"],
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_compose_runs_hello_numpy_with_podman(request: pytest.FixtureRequest, kits: Path, tmp_path: Path) -> None:
    """The compose file's services run with podman on an internal network (the server's port on 127.0.0.1 only);
    hello-numpy finishes; everything is removed. First: can a container start here at all?"""
    refusal = runtime_refusal()
    if refusal:
        pytest.skip(f"no container can start here ({refusal}); the compose file is checked in "
                    "tests/test_deploy_docker.py and the image runs the federation in chroot containers above")
    image: str = request.getfixturevalue("image")
    doc = compose(load_project_kits(kits))
    project = f"flctl-test-{os.getpid()}"
    env = {"FLCTL_KITS": str(kits), "FLCTL_BIND": "127.0.0.1", "FLCTL_PORT": str(free_port()),
           "FLCTL_IMAGE": image, "FLCTL_UID": "10001", "FLCTL_GID": "10001"}
    run("podman", "network", "create", "--internal", f"{project}-net")
    names: list[str] = []
    try:
        for name, service in doc["services"].items():
            names.append(f"{project}-{name}")
            args = ["podman", "run", "-d", "--name", names[-1], "--network", f"{project}-net",
                    "--user", "10001:10001", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                    "--security-opt", "no-new-privileges", "-v", f"{kits / service['labels']['flctl.dev/participant']}"
                    ":/kit:ro", "-v", f"{project}-{name}-ws:/workspace", "-e", "HOME=/workspace"]
            for alias in service["networks"]["federation"].get("aliases", []):
                args += ["--network-alias", alias]
            for port in service.get("ports", []):
                args += ["-p", port.replace("${FLCTL_BIND}", env["FLCTL_BIND"]).replace("${FLCTL_PORT}",
                                                                                      env["FLCTL_PORT"])]
            run(*args, image, *service["command"])
        admin = ["podman", "run", "--rm", "--network", f"{project}-net", "--user", "10001:10001", "-v",
                 f"{kits / 'admin@hub.org'}:/kit:ro", "-v", f"{ROOT / 'playbooks/jobs/hello-numpy'}:/job:ro", image]
        time.sleep(10)
        done = subprocess.run([*admin, "job", "submit", "/job", "--kit", "/kit", "--watch"], capture_output=True,
                              text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    finally:
        for name in names:
            subprocess.run(["podman", "rm", "-f", "-t", "10", name], capture_output=True, timeout=120, check=False)
            subprocess.run(["podman", "volume", "rm", "-f", f"{name}-ws"], capture_output=True, timeout=60,
                           check=False)
        subprocess.run(["podman", "network", "rm", "-f", f"{project}-net"], capture_output=True, timeout=60,
                       check=False)


def test_the_build_context_installs_offline_as_10001_and_copies_no_kit(tmp_path: Path) -> None:
    """Containerfile: wheels only (pip --no-index), USER 10001, a HEALTHCHECK; no flctl wheel: refused."""
    from flctl.cloud.deploy_errors import DeployInputError

    wheels = [tmp_path / "flctl-0.1.0-py3-none-any.whl", tmp_path / "numpy-2.0-cp311-none-any.whl"]
    for wheel in wheels:
        wheel.write_bytes(b"wheel")
    plan = container_image.ImagePlan("flctl:t", "python:3.11-slim", wheels)
    container_image.write_context(plan, tmp_path / "ctx")
    text = (tmp_path / "ctx" / "Containerfile").read_text()
    assert sorted(p.name for p in (tmp_path / "ctx" / "wheels").iterdir()) == sorted(w.name for w in wheels)
    assert "--no-index" in text and "USER 10001:10001" in text and "HEALTHCHECK" in text
    assert [line.split()[1] for line in text.splitlines() if line.startswith("COPY")] == ["wheels/"]
    with pytest.raises(DeployInputError, match=r"\[--wheelhouse\]"):
        container_image.context_files(container_image.ImagePlan("t", "b", wheels[1:]))
    with pytest.raises(DeployInputError, match=r"\[--with-torch\]"):
        container_image.context_files(container_image.ImagePlan("t", "b", wheels, torch=True))
