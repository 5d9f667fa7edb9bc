"""Certificates and fleet health through a real server: `flctl certs`, `site ls` marks, the Prometheus endpoint
(scraped and parsed with prometheus_client's parser) and alert hooks (a webhook on 127.0.0.1 and a command)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from .federation import FLCTL, Federation, free_port, project_text, running
from .job_folders import job_folder
from .test_alert_delivery import Receiver

HAS_PROMETHEUS = importlib.util.find_spec("prometheus_client") is not None
RAISER = "import flctl.client as fl\nfl.init()\nwhile fl.running():\n    fl.receive()\n    raise ValueError('boom')\n"


@dataclass
class Fleet:
    fed: Federation
    receiver: Receiver
    command_out: Path
    metrics_url: str


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two sites whose certificates (10-day ones) all expire within 30 days; the server has a Prometheus endpoint
    (when prometheus-client is installed) and alerts to a webhook (that answers 503 once) and to a command."""
    root = tmp_path_factory.mktemp("fleet")
    port, metrics_port = free_port(), free_port()
    text = project_text("fleet", port, 2) + "certs: {valid_days: 10}\n"
    result = provision(project_from_document(parse_yaml(text, "project.yml")).project, root / "ws")
    fed = Federation(root, result.prod_dir, port, ["site-1", "site-2"])
    local = fed.kit("localhost") / "local"
    if HAS_PROMETHEUS:
        with open(local / "resources.yml", "a") as resources:
            resources.write(f"metrics_port: {metrics_port}\n")
    receiver = Receiver(fail_first=1)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    command_out = root / "alerts.jsonl"
    hook = root / "hook.py"
    hook.write_text(f"import sys\nopen({str(command_out)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    (local / "alerts.yml").write_text(
        f"webhook:\n  url: {receiver.url}\n  headers: {{Authorization: Bearer t0ken}}\n"
        f"command: [{sys.executable}, {hook}]\n"
        "check_interval_s: 0.3\nretries: 3\nbackoff_s: 0.2\ndisk_low_mb: 0\n")
    try:
        with running(fed):
            yield Fleet(fed, receiver, command_out, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        receiver.shutdown()
        receiver.server_close()


def wait_for(check: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alerts_seen(fleet: Fleet) -> list[dict[str, Any]]:
    return list(fleet.receiver.bodies)


def test_certs_through_the_server_lists_every_participant_sorted(fleet):
    """The server's, the sites' and the calling admin's certificates, each 10 days from expiry."""
    fed = fleet.fed
    fed.flctl("site", "ls")  # the admin has called at least once
    rows = fed.flctl_json("certs")
    assert {(r["name"], r["kind"]) for r in rows} == {("localhost", "server"), ("site-1", "site"), ("site-2", "site"),
                                                      ("admin@hub.org", "admin")}
    assert [r["days_left"] for r in rows] == sorted(r["days_left"] for r in rows)
    assert all(r["expiring"] and r["days_left"] == pytest.approx(10, abs=0.1) for r in rows)
    admin = next(r for r in rows if r["kind"] == "admin")
    assert admin["role"] == "project_admin" and admin["org"] == "hub"


def test_site_ls_marks_certificates_under_30_days(fleet):
    sites = fleet.fed.flctl_json("site", "ls")
    assert all(s["cert_expiring"] is True and s["cert_days_left"] == pytest.approx(10, abs=0.1) for s in sites)
    table = fleet.fed.flctl("site", "ls")
    assert "(expiring)" in table.stdout and "expires in 10 days" in table.stderr


def test_expiring_certificates_alert_once_each_to_the_webhook_and_the_command(fleet):
    """One `cert_expiring` notice per participant, even though every check sees it again; the webhook's first
    answer was a 503, so that notice came on a retry; the command got the same notices on its stdin."""
    names = {"localhost", "site-1", "site-2", "admin@hub.org"}

    def certs() -> list[dict[str, Any]]:
        return [a for a in alerts_seen(fleet) if a["condition"] == "cert_expiring"]

    wait_for(lambda: {a["subject"] for a in certs()} == names, what="certificate alerts")
    time.sleep(1.0)  # three more checks
    got = certs()
    assert sorted(a["subject"] for a in got) == sorted(names)
    assert all(a["status"] == "firing" and a["project"] == "fleet" and a["_auth"] == "Bearer t0ken" for a in got)
    assert fleet.receiver.statuses[0] == 503
    by_command = wait_for(lambda: [json.loads(line) for line in fleet.command_out.read_text().splitlines()
                                   if '"cert_expiring"' in line] if fleet.command_out.exists() else [])
    assert sorted(a["subject"] for a in by_command) == sorted(names)


def test_a_site_going_offline_alerts_once_and_resolves_when_it_is_back(fleet):
    fed = fleet.fed

    def offline(status: str) -> list[dict[str, Any]]:
        return [a for a in alerts_seen(fleet) if a["condition"] == "site_offline" and a["status"] == status]

    fed.stop("site-2")
    alert = wait_for(lambda: offline("firing"), what="site-2 offline")[0]
    assert alert["subject"] == "site-2" and "offline" in alert["message"]
    fed.start("site-2")
    fed.wait_online(["site-2"])
    wait_for(lambda: offline("resolved"), what="site-2 back")
    assert [a["subject"] for a in offline("firing")] == ["site-2"]


def test_a_failed_job_alerts_once(fleet, tmp_path):
    fed = fleet.fed
    out = fed.flctl("job", "submit", job_folder(tmp_path, "raiser", script=RAISER), "--watch", "--json")
    job_id = json.loads(out.stdout)["id"]
    assert json.loads(out.stdout)["status"] == "FAILED"
    got = wait_for(lambda: [a for a in alerts_seen(fleet) if a["condition"] == "job_failed"], what="job alert")
    time.sleep(0.7)
    got = [a for a in alerts_seen(fleet) if a["condition"] == "job_failed"]
    assert [a["subject"] for a in got] == [job_id] and "boom" in got[0]["message"]


@pytest.mark.skipif(not HAS_PROMETHEUS, reason="needs the telemetry extra: bash scripts/setup.sh --all")
def test_prometheus_endpoint_reports_sites_jobs_rounds_bytes_and_certificates(fleet, tmp_path):
    """After a two-round job: sites online, heartbeat ages, jobs by state, two round durations, the model bytes
    moved both ways, and each certificate's days left; parsed with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    fed = fleet.fed
    out = fed.flctl("job", "submit", job_folder(tmp_path, "echo", sites=("site-1", "site-2"), rounds=2), "--watch",
                    "--json")
    assert json.loads(out.stdout)["status"] == "FINISHED", out.stderr
    with urllib.request.urlopen(fleet.metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(metric: str, /, **labels: str) -> float:
        return samples[(metric, tuple(sorted(labels.items())))]

    assert value("flctl_sites_known") == 2 and value("flctl_sites_online") == 2
    assert value("flctl_site_online", site="site-1") == 1
    assert 0 <= value("flctl_site_heartbeat_age_seconds", site="site-1") < 3
    assert value("flctl_jobs", state="finished") >= 1 and value("flctl_jobs", state="failed") >= 0
    assert value("flctl_round_duration_seconds_count") >= 2
    assert value("flctl_round_duration_seconds_sum") > 0
    assert value("flctl_round_duration_seconds_bucket", le="+Inf") == value("flctl_round_duration_seconds_count")
    assert value("flctl_model_bytes_sent_total") > 0 and value("flctl_model_bytes_received_total") > 0
    assert value("flctl_certificate_days_left", name="site-1", kind="site") == pytest.approx(10, abs=0.1)
    assert value("flctl_certificate_days_left", name="localhost", kind="server") == pytest.approx(10, abs=0.1)


@pytest.mark.skipif(not HAS_PROMETHEUS, reason="needs the telemetry extra: bash scripts/setup.sh --all")
def test_prometheus_endpoint_listens_on_127_0_0_1_only(fleet):
    port = int(fleet.metrics_url.rsplit(":", 1)[1].split("/")[0])
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A"]
    assert f"0100007F:{port:04X}" in listening  # 127.0.0.1, not 0.0.0.0


@pytest.mark.parametrize(("file", "text", "expected"), [
    ("alerts.yml", "webhook:\n  url: http://127.0.0.1:9/x\nretris: 3\n", "alerts.yml:3: retris: unknown key 'retris'"),
    ("alerts.yml", "conditions: [disk_full]\n", "alerts.yml:1: conditions[0]: 'disk_full' is not allowed"),
    ("resources.yml", "metrics_port: 70000\n", "metrics_port must be a TCP port from 1 to 65535, or 0"),
    ("resources.yml", "metrics_host: ''\n", "metrics_host must be an address to listen on"),
])
def test_server_start_refuses_a_bad_alerts_or_metrics_setting(fleet, tmp_path, file, text, expected):
    """exit 2 naming the file (and, for alerts.yml, the line and key), before the server starts."""
    import shutil

    kit = tmp_path / "localhost"
    shutil.copytree(fleet.fed.kit("localhost"), kit)
    (kit / "local" / file).write_text(text)
    out = subprocess.run([FLCTL, "node", "start", kit], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr and str(kit / "local" / file) in out.stderr and "Traceback" not in out.stderr


def test_the_server_does_not_import_prometheus_client_unless_asked():
    """prometheus-client is imported when metrics_port is set, not by the daemon's modules."""
    code = ("import sys, flctl.node.server.daemon, flctl.node.server.alerting\n"
            "print('prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
