"""The wss transport with real processes: a server with a WebSocket port, site-1 on wss through tinyproxy (a real
forward proxy that allows CONNECT to that port only, so gRPC through it is refused), site-2 on gRPC, in the same
jobs; a large model both ways; the network cut and the server restarted under a wss site; a proxy that refuses."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from .conftest import ROOT
from .federation import ADMIN, Federation, free_port
from .tinyproxy import Tinyproxy, needs_tinyproxy

JOBS = ROOT / "playbooks" / "jobs"
NO_PROXY_ENV = {"no_proxy": "", "NO_PROXY": "", "grpc_proxy": "", "no_grpc_proxy": ""}


def wss_project(name: str, port: int, wss_port: int, transports: list[str]) -> str:
    sites = "".join(f"  - {{name: site-{i}, org: org_{i}, transport: {t}}}\n" for i, t in enumerate(transports, 1))
    return (f"api_version: 1\nname: {name}\n"
            f"server: {{name: localhost, org: hub, port: {port}, wss_port: {wss_port}, hosts: [127.0.0.1]}}\n"
            f"sites:\n{sites}admins:\n  - {{name: {ADMIN[0]}, org: {ADMIN[1]}, role: {ADMIN[2]}}}\n"
            "heartbeat: {interval_s: 0.5, timeout_s: 4}\n")


def make_wss_federation(root: Path, transports: list[str]) -> tuple[Federation, int]:
    port, wss_port = free_port(), free_port()
    text = wss_project("wsstest", port, wss_port, transports)
    (root / "project.yml").write_text(text)
    result = provision(project_from_document(parse_yaml(text, "project.yml")).project, root / "ws")
    return Federation(root, result.prod_dir, port, [f"site-{i}" for i in range(1, len(transports) + 1)]), wss_port


def proxy_env(url: str) -> dict[str, str]:
    """A site's environment naming `url` as its HTTPS proxy (and nothing bypassing it)."""
    return {**NO_PROXY_ENV, "HTTPS_PROXY": url, "https_proxy": url}


class Setup:
    def __init__(self, fed: Federation, wss_port: int, proxy: Tinyproxy) -> None:
        self.fed, self.wss_port, self.proxy = fed, wss_port, proxy


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    needs_tinyproxy()
    root = tmp_path_factory.mktemp("wss")
    fed, wss_port = make_wss_federation(root, ["wss", "grpc"])
    proxy = Tinyproxy(root, [wss_port])
    try:
        fed.start("localhost")
        fed.start("site-1", env=proxy_env(proxy.url))
        fed.start("site-2", env=NO_PROXY_ENV)
        fed.wait_online(fed.sites)
        yield Setup(fed, wss_port, proxy)
    finally:
        fed.stop_all()
        proxy.close()


def submit_and_wait(fed: Federation, job: Path, timeout: float = 120) -> dict:
    out = fed.flctl("job", "submit", job, "--json")
    assert out.returncode == 0, out.stderr
    job_id = str(json.loads(out.stdout)["id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = fed.flctl_json("job", "show", job_id)
        if shown["status"] in ("FINISHED", "FAILED", "ABORTED"):
            return dict(shown)
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end; logs: {fed.logs()}")


def test_hello_numpy_with_a_site_on_wss_through_the_proxy_and_one_on_grpc(setup, tmp_path):
    """hello-numpy finishes with both sites; site-1's connections went through tinyproxy to the WebSocket port."""
    before = setup.proxy.logged().count(f"CONNECT localhost:{setup.wss_port}")
    job = submit_and_wait(setup.fed, JOBS / "hello-numpy")
    assert job["status"] == "FINISHED", job.get("error", "") + setup.fed.logs()
    assert {s["name"] for s in job["sites"]} == {"site-1", "site-2"}
    assert set(job["last_metrics"]) == {"site-1", "site-2"}
    assert setup.proxy.logged().count(f"CONNECT localhost:{setup.wss_port}") > before, setup.proxy.logged()[-2000:]
