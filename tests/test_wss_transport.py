"""The wss transport with real processes: a server with a WebSocket port; site-1 on wss through tinyproxy (a real
forward proxy that allows CONNECT to that port only, so gRPC through it is refused), site-2 on gRPC, site-3 on wss
through a CONNECT proxy the test can cut, all in the same jobs; a large model both ways; the network cut and the
server restarted under the wss sites; a proxy that refuses, in the site's log and in `flctl preflight`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.admin.admin_client import AdminClient
from flctl.node.config.kit import load_kit
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from .conftest import ROOT
from .connect_proxy import ConnectProxy
from .federation import ADMIN, FLCTL, Federation, events_until_round, free_port
from .inspecting_proxy import InspectingProxy
from .test_reliability import expected_model, slow_job
from .tinyproxy import Tinyproxy, needs_tinyproxy, tinyproxy

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
    def __init__(self, fed: Federation, wss_port: int, proxy: Tinyproxy, cuttable: ConnectProxy) -> None:
        self.fed, self.wss_port, self.proxy, self.cuttable = fed, wss_port, proxy, cuttable
        self.online = ["site-1", "site-2", "site-3"]  # site-4 (wss) is started by the refusal test only


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    needs_tinyproxy()
    root = tmp_path_factory.mktemp("wss")
    fed, wss_port = make_wss_federation(root, ["wss", "grpc", "wss", "wss"])
    proxy = Tinyproxy(root, [wss_port])
    cuttable = ConnectProxy()
    try:
        fed.start("localhost")
        fed.start("site-1", env=proxy_env(proxy.url))
        fed.start("site-2", env=NO_PROXY_ENV)
        fed.start("site-3", env=proxy_env(cuttable.url))
        fed.wait_online(["site-1", "site-2", "site-3"])
        yield Setup(fed, wss_port, proxy, cuttable)
    finally:
        fed.stop_all()
        proxy.close()
        cuttable.close()


@pytest.fixture
def wss(setup: Setup) -> Iterator[Setup]:
    """The module's federation, its three sites online before and after the test."""
    setup.cuttable.restore()
    setup.fed.wait_online(setup.online)
    yield setup
    setup.cuttable.restore()


def submit(fed: Federation, job: Path) -> str:
    out = fed.flctl("job", "submit", job, "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["id"])


def submit_and_wait(fed: Federation, job: Path, timeout: float = 120) -> dict:
    return wait_ended(fed, submit(fed, job), timeout)


def wait_ended(fed: Federation, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = fed.flctl_json("job", "show", job_id)
        if shown["status"] in ("FINISHED", "FAILED", "ABORTED"):
            return dict(shown)
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end; logs: {fed.logs()}")


def test_hello_numpy_with_sites_on_wss_through_proxies_and_one_on_grpc(wss, tmp_path):
    """hello-numpy finishes with the three sites, two of them on wss; site-1's job process reached the server
    through tinyproxy's CONNECT to the WebSocket port."""
    before = wss.proxy.logged().count(f"CONNECT localhost:{wss.wss_port}")
    job = submit_and_wait(wss.fed, JOBS / "hello-numpy")
    assert job["status"] == "FINISHED", job.get("error", "") + wss.fed.logs()
    assert {s["name"] for s in job["sites"]} == set(wss.online)
    assert set(job["last_metrics"]) == set(wss.online)
    assert wss.proxy.logged().count(f"CONNECT localhost:{wss.wss_port}") > before, wss.proxy.logged()[-2000:]


def test_grpc_through_the_proxy_is_refused(wss):
    """The proxy allows CONNECT to the WebSocket port only: gRPC through it, to the gRPC port, does not connect."""
    kit = load_kit(wss.fed.kit("site-2"), verify=False)
    creds = grpc.ssl_channel_credentials(root_certificates=kit.ca_pem, private_key=kit.key_pem,
                                         certificate_chain=kit.cert_pem)
    with grpc.secure_channel(kit.target, creds, options=[("grpc.http_proxy", wss.proxy.url)]) as chan, \
            pytest.raises(grpc.RpcError) as caught:
        pb_grpc.FederationStub(chan).ServerInfo(pb.Empty(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"CONNECT localhost:{wss.fed.port}" in wss.proxy.logged()


BIG_MODEL = """\
import numpy as np
import flctl.client as fl

fl.init()
site = fl.site_name()
while fl.running():
    model = fl.receive()
    params = model.params or {"w": (np.arange(2 * 1024 * 1024) % 1021).astype(np.float32),
                              "b": np.arange(15, dtype=np.float64).reshape(3, 5)}
    bump = {"site-1": 1.0, "site-2": 3.0, "site-3": 5.0}[site]
    for value in params.values():
        value += value.dtype.type(bump)
    fl.send(fl.Model(params=params, num_examples=int(bump)))
"""


def test_an_8_mib_model_goes_both_ways_over_wss_and_grpc_exactly(wss, tmp_path):
    """An 8 MiB model (8 chunks) goes to the three sites and back for two rounds (the wss sites' bytes through the
    proxies), and the final model is the exact weighted average: x + (1*1 + 3*3 + 5*5) / 9 per round."""
    folder = tmp_path / "bigmodel"
    (folder / "app").mkdir(parents=True)
    (folder / "job.yml").write_text("api_version: 1\nname: bigmodel\n"
                                    "workflow: {type: fedavg, args: {rounds: 2, round_timeout_s: 120}}\n"
                                    "sites: all\nmin_sites: 3\napp: {command: [python, train.py]}\n")
    (folder / "app" / "train.py").write_text(BIG_MODEL)
    job_id = submit(wss.fed, folder)
    done = wait_ended(wss.fed, job_id, timeout=180)
    assert done["status"] == "FINISHED", done.get("error", "") + wss.fed.logs()
    got = wss.fed.flctl_json("job", "download", job_id, "-o", tmp_path / "out")
    final = load_file(Path(got["path"]) / "models" / "final.safetensors")
    step = (1 * 1 + 3 * 3 + 5 * 5) / 9  # 35/9 per round
    start = (np.arange(2 * 1024 * 1024) % 1021).astype(np.float64)
    np.testing.assert_allclose(final["w"], start + 2 * step, rtol=1e-6)
    assert final["w"].dtype == np.float32
    np.testing.assert_allclose(final["b"], np.arange(15, dtype=np.float64).reshape(3, 5) + 2 * step, rtol=1e-12)


def held_job(root: Path, rounds: int) -> Path:
    """hello-numpy's training, 0.2 s a round, holding while the file `<root>/hold-<site>` exists."""
    job = slow_job(root, rounds, 1, 0.2)
    source = (job / "app" / "train.py").read_text()
    hook = ("        model = fl.receive()\n"
            "        import os, time\n"
            f"        while os.path.exists(os.path.join({str(root)!r}, 'hold-' + fl.site_name())):\n"
            "            time.sleep(0.05)\n")
    (job / "app" / "train.py").write_text(source.replace("        model = fl.receive()\n", hook))
    return job


def test_network_cut_under_a_wss_site_it_reconnects_and_the_job_finishes(wss, tmp_path):
    """Cut site-3's network (its proxy resets every tunnel) mid-job: it is dropped, the rounds go on; restored, its
    WebSocket opens again, it rejoins and the job finishes."""
    job = held_job(tmp_path, rounds=8)
    holds = [tmp_path / "hold-site-1", tmp_path / "hold-site-2"]
    with AdminClient.from_kit(wss.fed.admin_kit) as admin:
        job_id = admin.submit_job(job)
        events, tunnels_before = [], 0
        for event in admin.watch(job_id):
            events.append(event)
            if event.kind == "round" and event.data["round"] == 0 and not tunnels_before:
                tunnels_before = wss.cuttable.tunnels
                wss.cuttable.cut()
            elif event.kind == "site_failed" and "site-3" in event.message and not holds[0].exists():
                for hold in holds:  # the others wait for site-3, so the job cannot end without it
                    hold.touch()
                wss.cuttable.restore()
            elif event.kind == "site_rejoined" and "site-3" in event.message:
                for hold in holds:
                    hold.unlink(missing_ok=True)
        info = admin.get_job(job_id)
    assert info.status == "FINISHED", f"{info.status}: {info.error}\n{wss.fed.logs()}"
    kinds = [e.kind for e in events]
    assert kinds.index("site_failed") < kinds.index("site_rejoined"), kinds
    assert wss.cuttable.refused > 0, "site-3 tried to reconnect while the network was cut"
    assert wss.cuttable.tunnels > tunnels_before, "site-3 reconnected through the restored network"
    assert "the WebSocket to the server opened again" in (wss.fed.root / "site-3.log").read_text()


def test_server_killed_mid_job_resumes_with_its_wss_sites(wss, tmp_path):
    """SIGKILL the server after round 1; restarted, the wss sites reconnect through their proxies, the job resumes
    and ends with the exact model of an uninterrupted run."""
    rounds = 4
    job = slow_job(tmp_path, rounds, 3, 0.3)
    with AdminClient.from_kit(wss.fed.admin_kit) as admin:
        job_id = admin.submit_job(job)
        events_until_round(admin, job_id, 1)
    wss.fed.stop("localhost", signal.SIGKILL)
    wss.fed.start("localhost")
    wss.fed.wait_online(wss.online, timeout=40)
    with AdminClient.from_kit(wss.fed.admin_kit) as admin:
        kinds = [e.kind for e in admin.watch(job_id)]
        info = admin.get_job(job_id)
        assert info.status == "FINISHED", info.error + wss.fed.logs()
        target = admin.download_job(job_id, tmp_path / "out")
    assert "resumed" in kinds
    final = load_file(target / "models" / "final.safetensors")
    for name, value in expected_model(wss.online, rounds).items():
        np.testing.assert_allclose(final[name], value, rtol=1e-6, atol=1e-7)


def preflight(fed: Federation, kit: str, env: dict[str, str]) -> tuple[int, list[dict]]:
    out = subprocess.run([FLCTL, "preflight", str(fed.kit(kit)), "--json"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, **env}, check=False)
    return out.returncode, json.loads(out.stdout)


def test_preflight_checks_a_wss_site_through_its_proxy(wss):
    """`flctl preflight` on site-1's kit opens a WebSocket through its proxy and asks the server over it."""
    code, rows = preflight(wss.fed, "site-1", proxy_env(wss.proxy.url))
    by_check = {r["check"]: r for r in rows}
    assert by_check["transport"]["status"] == "ok", rows
    assert f"through the proxy {wss.proxy.url}" in by_check["transport"]["sentence"]
    assert by_check["server"]["status"] == "ok" and "over wss" in by_check["server"]["sentence"], rows
    assert by_check["clock"]["status"] == "ok", rows
    assert code == 0, rows


def test_a_proxy_that_refuses_is_one_sentence_in_the_site_log_and_in_preflight(wss, tmp_path):
    """site-4 (wss) behind a proxy that allows CONNECT to no port of the server: its log and `flctl preflight`
    say, in one sentence, that the proxy refused and what to ask for; it never comes online."""
    with tinyproxy(tmp_path, [1]) as refusing:
        wss.fed.start("site-4", env=proxy_env(refusing.url))
        try:
            log = wss.fed.root / "site-4.log"
            sentence = (f"the proxy {refusing.url} refused to connect to localhost:{wss.wss_port} (403 Access "
                        f"violation); ask its operator to allow CONNECT to port {wss.wss_port}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and sentence not in log.read_text(errors="replace"):
                time.sleep(0.2)
            assert f"cannot open the WebSocket to the server: {sentence}" in log.read_text(), log.read_text()
            assert log.read_text().count(sentence) == 1, "said once, not at every retry"
            code, rows = preflight(wss.fed, "site-4", proxy_env(refusing.url))
        finally:
            wss.fed.stop("site-4")
    transport = next(r for r in rows if r["check"] == "transport")
    assert (transport["status"], transport["sentence"]) == ("fail", f"wss: {sentence}")
    assert code == 3, rows
    online = {s["name"] for s in wss.fed.flctl_json("site", "ls") if s["online"]}
    assert "site-4" not in online


def test_proxy_authentication(wss, tmp_path):
    """A proxy that asks for Basic authentication: without the user and password in HTTPS_PROXY preflight says
    so (407); with them, the WebSocket opens and the server answers over it."""
    with tinyproxy(tmp_path, [wss.wss_port], auth=("siteuser", "s3cret")) as proxy:
        bare = proxy.url.replace("siteuser:s3cret@", "")
        code, rows = preflight(wss.fed, "site-1", proxy_env(bare))
        transport = next(r for r in rows if r["check"] == "transport")
        assert transport["status"] == "fail" and "(407 " in transport["sentence"], rows
        assert "HTTPS_PROXY as http://USER:PASSWORD@HOST:PORT" in transport["sentence"]
        assert code == 3
        code, rows = preflight(wss.fed, "site-1", proxy_env(proxy.url))
    by_check = {r["check"]: r for r in rows}
    assert by_check["transport"]["status"] == "ok" and "s3cret" not in by_check["transport"]["sentence"], rows
    assert by_check["server"]["status"] == "ok", rows


def test_an_unknown_transport_is_refused_at_provisioning(tmp_path):
    """`transport: websocket` in project.yml: exit 2, the file, line and field named, what is allowed, no kits."""
    text = wss_project("badtransport", 8443, 8444, ["grpc", "websocket"])
    (tmp_path / "project.yml").write_text(text)
    out = subprocess.run([FLCTL, "provision", str(tmp_path / "project.yml"), "-w", str(tmp_path / "ws")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "project.yml:6: sites[1].transport: 'websocket' is not allowed; use 'grpc' or 'wss'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").rglob("node.yml"))


def test_a_wss_site_needs_the_servers_wss_port(tmp_path):
    """A site on wss in a project whose server names no wss_port: exit 2, saying what to add."""
    text = wss_project("noport", 8443, 8444, ["wss"]).replace(", wss_port: 8444", "")
    (tmp_path / "project.yml").write_text(text)
    out = subprocess.run([FLCTL, "provision", str(tmp_path / "project.yml"), "-w", str(tmp_path / "ws")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "site site-1 has transport: wss, but the server has no wss_port" in out.stderr


def test_a_local_transport_setting_is_checked(tmp_path):
    """local/resources.yml's transport: grpc or wss; anything else stops the node naming the key (exit 2)."""
    from flctl.node.config.resources import load_resources
    from flctl.provisioner.errors import KitError

    path = tmp_path / "resources.yml"
    path.write_text("transport: wss\n")
    assert load_resources(path).transport == "wss"
    path.write_text("transport: http\n")
    with pytest.raises(KitError, match="transport must be grpc or wss"):
        load_resources(path)


def test_the_behind_proxy_example_provisions_one_site_on_wss(tmp_path):
    """playbooks/projects/behind-proxy.yml: childrens' node.yml says transport: wss, every node.yml the wss_port."""
    out = subprocess.run([FLCTL, "provision", str(ROOT / "playbooks" / "projects" / "behind-proxy.yml"), "-w",
                          str(tmp_path), "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    prod = tmp_path / "behind-proxy" / "prod_00"
    childrens = load_kit(prod / "childrens")
    north = load_kit(prod / "general-north")
    assert (childrens.info.config.transport, childrens.info.config.wss_port) == ("wss", 443)
    assert (north.info.config.transport, north.info.config.wss_port) == (None, 443)


def test_a_site_set_to_wss_locally_without_the_servers_wss_port_does_not_start(tmp_path):
    """A gRPC-only project's site with `transport: wss` in local/resources.yml: `flctl node start` exits 2 saying
    the kit names no wss_port and what to do."""
    text = wss_project("grpconly", free_port(), 8444, ["grpc"]).replace(", wss_port: 8444", "")
    result = provision(project_from_document(parse_yaml(text, "project.yml")).project, tmp_path / "ws")
    kit = result.prod_dir / "site-1"
    (kit / "local" / "resources.yml").write_text("transport: wss\n")
    out = subprocess.run([FLCTL, "node", "start", str(kit)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "this site's transport is wss, but its kit" in out.stderr and "names no wss_port" in out.stderr
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------------- a proxy that inspects TLS
def kit_copy(fed: Federation, site: str, root: Path, resources: str) -> Path:
    """A copy of `site`'s kit (its signed startup/ unchanged) with `resources` as its local/resources.yml."""
    copy = root / f"{site}-kit"
    shutil.copytree(fed.kit(site), copy, ignore=shutil.ignore_patterns("workspace"))
    (copy / "local" / "resources.yml").write_text(resources)
    return copy


def preflight_kit(kit: Path, env: dict[str, str]) -> tuple[int, dict[str, dict]]:
    out = subprocess.run([FLCTL, "preflight", str(kit), "--json"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env}, check=False)
    return out.returncode, {r["check"]: r for r in json.loads(out.stdout)}


def test_behind_a_proxy_that_inspects_tls_the_certificate_cannot_pass_and_tokens_are_off_by_default(wss, tmp_path):
    """Through a proxy that inspects TLS, a wss site with its certificate fails the TLS check saying why, and one
    with a token is refused by a server that does not allow tokens (the default)."""
    proxy = InspectingProxy(tmp_path, wss.wss_port)
    try:
        env = {**proxy_env(proxy.url), "SSL_CERT_FILE": str(proxy.ca_file)}
        code, rows = preflight_kit(kit_copy(wss.fed, "site-1", tmp_path / "a", "transport: wss\n"), env)
        assert rows["transport"]["status"] == "fail", rows
        assert "a proxy that inspects TLS cannot pass a site's certificate" in rows["transport"]["sentence"]
        assert code == 3
        code, rows = preflight_kit(kit_copy(wss.fed, "site-1", tmp_path / "b", "wss_auth: token\n"), env)
        assert rows["transport"]["status"] == "fail", rows
        assert "closed the connection before answering the WebSocket request" in rows["transport"]["sentence"], rows
        assert proxy.inspected == 1  # the second site's TLS; the first refused the proxy's certificate
    finally:
        proxy.close()


def test_a_site_token_opens_the_tunnel_through_a_proxy_that_inspects_tls(wss, tmp_path):
    """A WebSocket port that allows site tokens (`wss_token_auth`), behind a proxy that inspects TLS: a site with
    `wss_auth: token` opens its tunnel, and the server answers over it, the inner gRPC mutual TLS end to end."""
    from flctl.node.transport.wss_listener import WssListener

    server_kit = load_kit(wss.fed.kit("localhost"), verify=False)
    listener = WssListener(server_kit, "127.0.0.1", free_port(), "127.0.0.1", wss.fed.port, token_auth=True)
    proxy = InspectingProxy(tmp_path, int(listener.address.rpartition(":")[2]))
    try:
        env = {**proxy_env(proxy.url), "SSL_CERT_FILE": str(proxy.ca_file)}
        code, rows = preflight_kit(kit_copy(wss.fed, "site-1", tmp_path / "c", "wss_auth: token\n"), env)
        assert rows["transport"]["status"] == "ok", rows
        assert rows["server"]["status"] == "ok" and "over wss" in rows["server"]["sentence"], rows["server"]
        assert code == 0, rows
        assert proxy.inspected >= 2  # the probe's WebSocket and the tunnel's
    finally:
        proxy.close()
        listener.close()


def test_site_tokens_are_checked(wss):
    """A token opens a tunnel only for the site whose certificate (from this CA, not revoked) signed it, for this
    server and path, within its few minutes."""
    from cryptography import x509

    from flctl.node.transport.wss_token import TokenRefused, check_token, make_token

    site = load_kit(wss.fed.kit("site-1"), verify=False)
    admin = load_kit(wss.fed.admin_kit, verify=False)
    ca = x509.load_pem_x509_certificate(site.ca_pem)
    path, now = "/flctl/v1/grpc", time.time()
    good = make_token(site.cert_pem, site.key_pem, "site-1", "localhost", path, now)
    assert check_token(good, ca, "localhost", path, lambda _s: False, now) == "site-1"
    cert_part, claims_part, signature_part = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(claims_part + "=" * (-len(claims_part) % 4)))
    claims["exp"] += 3600
    longer = ".".join((cert_part, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("="),
                       signature_part))
    cases = {
        "expired": (good, now + 600, lambda _s: False, "expired"),
        "another server": (make_token(site.cert_pem, site.key_pem, "site-1", "elsewhere", path, now), now,
                           lambda _s: False, "made for elsewhere"),
        "revoked": (good, now, lambda _s: True, "was revoked"),
        "an admin's": (make_token(admin.cert_pem, admin.key_pem, "site-1", "localhost", path, now), now,
                       lambda _s: False, "belongs to admin"),
        "a longer life written in": (longer, now, lambda _s: False, "not signed with the key of site 'site-1'"),
        "malformed": ("not-a-token", now, lambda _s: False, "malformed"),
    }
    for name, (token, when, revoked, phrase) in cases.items():
        with pytest.raises(TokenRefused, match=phrase):
            check_token(token, ca, "localhost", path, revoked, when)
            pytest.fail(f"the {name} token was taken")


def test_each_way_a_websocket_fails_is_one_sentence():
    """A proxy's refusal (403), its failure to reach the server (5xx), a password wanted (407), an HTTP answer that
    is not a WebSocket, a proxy that cut the connection: each its own sentence, the password never shown."""
    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidMessage, InvalidProxyMessage, InvalidProxyStatus, InvalidStatus
    from websockets.http11 import Response

    from flctl.node.transport.wss_problems import sentence

    url, proxy = "wss://fl.example.org:443/flctl/v1/grpc", "http://ops:s3cret@proxy.example.org:3128"

    def status(code: int, reason: str, kind: type = InvalidProxyStatus) -> Exception:
        return kind(Response(code, reason, Headers(), b"a reason\n"))

    def closed(kind: type) -> Exception:
        exc = kind("no answer")
        exc.__cause__ = EOFError("stream ended")
        return exc

    said = {
        "refused": sentence(status(403, "Forbidden"), url, proxy),
        "unreachable": sentence(status(502, "Bad Gateway"), url, proxy),
        "password": sentence(status(407, "Proxy Authentication Required"), url, proxy),
        "not a websocket": sentence(status(404, "Not Found", InvalidStatus), url, proxy),
        "proxy cut": sentence(closed(InvalidProxyMessage), url, proxy),
        "server cut": sentence(closed(InvalidMessage), url, proxy),
    }
    assert said["refused"] == ("the proxy http://ops@proxy.example.org:3128 refused to connect to fl.example.org:443 "
                               "(403 Forbidden); ask its operator to allow CONNECT to port 443")
    assert said["unreachable"].startswith("the proxy http://ops@proxy.example.org:3128 could not reach "
                                          "fl.example.org:443 (502 Bad Gateway)")
    assert "HTTPS_PROXY as http://USER:PASSWORD@HOST:PORT" in said["password"]
    assert "answered HTTP 404 instead of opening a WebSocket" in said["not a websocket"]
    assert "closed the connection without answering" in said["proxy cut"]
    assert "see wss_auth: token" in said["server cut"]
    assert len(set(said.values())) == len(said) and not any("s3cret" in s for s in said.values())
