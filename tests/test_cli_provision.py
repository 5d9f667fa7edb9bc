"""`flctl provision` and `flctl kit` from the command line: exit codes, JSON, and errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LOCAL_PROJECT, ROOT, run_flctl

FLCTL = Path(sys.executable).parent / "flctl"


def test_provision_json(flctl, tmp_path):
    """--json prints only JSON with the documented keys."""
    result = flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["project"] == "local" and data["ca_created"] is True
    assert data["prod_dir"] == str(tmp_path / "local" / "prod_00")
    assert [k["name"] for k in data["kits"]] == ["localhost", "site-1", "site-2", "admin@localhost"]
    assert set(data["kits"][0]) == {"name", "kind", "org", "role", "status", "reason", "expires", "kit", "zip",
                                    "external_key", "encrypted_zip"}


def test_provision_build_is_the_same_command(flctl, tmp_path):
    assert flctl("provision", "build", LOCAL_PROJECT, "-w", tmp_path, "--json").code == 0
    assert (tmp_path / "local/prod_00/site-1/startup/site.crt").is_file()


def test_provision_table(flctl, tmp_path):
    result = flctl("provision", LOCAL_PROJECT, "-w", tmp_path)
    assert result.code == 0
    assert "site-1" in result.stdout and "project_admin" in result.stdout
    assert "wrote 4 kits to" in result.stderr


def test_bad_project_exits_2_with_lines_and_no_traceback(flctl, write_project, tmp_path):
    path = write_project("api_version: 1\nname: demo\nserver: {name: localhost, org: o}\n"
                         "sites: [{name: a, org: o}, {name: a, org: o}]\n")
    result = flctl("provision", path, "-w", tmp_path / "ws")
    assert result.code == 2
    assert f"{path}:4: sites[1].name: 'a' is already used by sites[0].name" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ws").exists(), "nothing is written for a bad project"


def test_missing_project_file_exits_2(flctl, tmp_path):
    result = flctl("provision", tmp_path / "none.yml", "-w", tmp_path)
    assert result.code == 2 and "no such file" in result.stderr


def test_unknown_option_exits_2(flctl):
    assert flctl("provision", LOCAL_PROJECT, "--bogus").code == 2


def test_passphrase_from_environment(flctl, tmp_path, monkeypatch):
    """--passphrase-env: unset variable is exit 2; wrong passphrase is exit 3; right one works."""
    assert flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--passphrase-env", "FLCTL_TEST_PW").code == 2
    monkeypatch.setenv("FLCTL_TEST_PW", "s3cret")
    assert flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--passphrase-env", "FLCTL_TEST_PW").code == 0
    assert flctl("provision", LOCAL_PROJECT, "-w", tmp_path).code == 3
    monkeypatch.setenv("FLCTL_TEST_PW", "wrong")
    result = flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--passphrase-env", "FLCTL_TEST_PW")
    assert result.code == 3 and "does not unlock" in result.stderr


def test_kit_verify_exit_codes(flctl, local_kits, kit_copy):
    good = flctl("kit", "verify", local_kits.prod_dir / "site-1", "--json")
    assert good.code == 0 and good.json()["ok"] is True
    kit = kit_copy("site-2")
    (kit / "startup/node.yml").write_text("tampered\n")
    bad = flctl("kit", "verify", kit)
    assert bad.code == 1
    assert "startup/node.yml was changed" in bad.stderr


def test_kit_verify_with_pinned_ca(flctl, local_kits):
    result = flctl("kit", "verify", local_kits.prod_dir / "site-1", "--ca", local_kits.state_dir / "ca.crt")
    assert result.code == 0
    assert flctl("kit", "verify", local_kits.prod_dir / "site-1", "--ca", LOCAL_PROJECT).code == 2


def test_kit_show_json(flctl, local_kits):
    result = flctl("kit", "show", local_kits.prod_dir / "admin@localhost", "--json")
    assert result.code == 0
    data = result.json()
    assert (data["name"], data["kind"], data["org"], data["role"]) == ("admin@localhost", "admin", "local",
                                                                       "project_admin")
    assert data["server"] == "localhost:8443" and data["project"] == "local"
    assert 360 <= data["days_left"] <= 366


def test_kit_show_warns_when_expiring(flctl, write_project, tmp_path):
    path = write_project("api_version: 1\nname: short\nserver: {name: localhost, org: o}\n"
                         "sites: [{name: s, org: o}]\ncerts: {valid_days: 10}\n")
    assert flctl("provision", path, "-w", tmp_path).code == 0
    result = flctl("kit", "show", tmp_path / "short/prod_00/s")
    assert result.code == 0 and "expires within 30 days" in result.stderr


def test_kit_show_of_a_non_kit_exits_2(flctl, tmp_path):
    result = flctl("kit", "show", tmp_path)
    assert result.code == 2 and "is not a startup kit" in result.stderr


def test_csr_round_trip_from_the_command_line(flctl, tmp_path):
    """kit request -> provision sign -> kit complete -> kit verify, all through flctl."""
    req = flctl("kit", "request", "site-1", "--org", "local", "-o", tmp_path / "site", "--json")
    assert req.code == 0, req.stderr
    csr = req.json()["csr"]
    signed = flctl("provision", "sign", csr, "-p", LOCAL_PROJECT, "-w", tmp_path / "ws", "--json")
    assert signed.code == 0, signed.stderr
    kit = signed.json()["kit"]
    assert flctl("kit", "verify", kit).code == 1
    done = flctl("kit", "complete", kit, "--key", req.json()["key"])
    assert done.code == 0, done.stderr
    assert flctl("kit", "verify", kit).code == 0


def test_kit_request_rejects_bad_kind(flctl, tmp_path):
    result = flctl("kit", "request", "x", "--org", "o", "--kind", "robot", "-o", tmp_path)
    assert result.code == 2 and "--kind: 'robot' is not allowed" in result.stderr


def test_real_binary_reports_errors_without_traceback(tmp_path):
    """The installed console script: a user's mistake is one line and exit 2."""
    bad = tmp_path / "p.yml"
    bad.write_text("api_version: 1\nname: x\nserver: {name: 'no good', org: o}\n")
    out = subprocess.run([FLCTL, "provision", bad, "-w", tmp_path], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "server.name: 'no good' is not a valid host" in out.stderr


def test_help_is_instant_and_imports_nothing_heavy():
    """`flctl --help` imports neither cryptography, pydantic, textual, grpc nor torch."""
    code = ("import sys; from flctl.console.cli.app import app; "
            "heavy = [m for m in ('cryptography', 'pydantic', 'textual', 'grpc', 'torch', 'boto3', 'yaml') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"
    help_out = subprocess.run([FLCTL, "--help"], capture_output=True, text=True, check=True)
    assert "provision" in help_out.stdout and "kit" in help_out.stdout


@pytest.fixture
def umask_022():
    """The usual umask, under which a file created without an explicit mode is readable by everyone."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def stat_mode(path: str | Path) -> str:
    """The mode as coreutils' `stat` reports it."""
    return subprocess.run(["stat", "-c", "%a", path], capture_output=True, text=True, check=True).stdout.strip()


def test_build_and_renew_write_private_kits_under_umask_022(flctl, tmp_path, umask_022):
    """`provision` and `provision renew` write each kit folder 0700 and each zip 0600."""
    built = flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--json")
    renewed = flctl("provision", "renew", "site-1", "-p", LOCAL_PROJECT, "-w", tmp_path, "--json")
    for result in (built, renewed):
        assert result.code == 0, result.stderr
        for kit in result.json()["kits"]:
            assert (stat_mode(kit["kit"]), stat_mode(kit["zip"])) == ("700", "600"), kit["name"]


def test_sign_writes_a_private_kit_and_prints_the_exact_complete_command(flctl, tmp_path, umask_022):
    """`provision sign -o DIR`: kit 0700, zip 0600, and the `kit complete` line names DIR."""
    req = flctl("kit", "request", "site-1", "--org", "local", "-o", tmp_path / "site", "--json")
    out = tmp_path / "to send" / "site-1"
    signed = flctl("provision", "sign", req.json()["csr"], "-p", LOCAL_PROJECT, "-w", tmp_path / "ws", "-o", out)
    assert signed.code == 0, signed.stderr
    assert (stat_mode(out), stat_mode(out.parent / "site-1.zip")) == ("700", "600")
    assert f"flctl kit complete '{out}' --key site-1.key" in signed.stderr
    done = flctl("kit", "complete", out, "--key", tmp_path / "site" / "site-1.key")
    assert done.code == 0, done.stderr


@pytest.fixture(scope="module")
def sealed_kits(tmp_path_factory):
    """The local project provisioned once with --zip-passphrase-env and site-1's zip encrypted to its own key."""
    root = tmp_path_factory.mktemp("sealed")
    request = run_flctl("kit", "request", "site-1", "--org", "local", "-o", root / "at-site-1", "--json")
    os.environ["FLCTL_TEST_ZIP_PW"] = "correct horse battery"
    try:
        built = run_flctl("provision", LOCAL_PROJECT, "-w", root / "ws", "--zip-passphrase-env", "FLCTL_TEST_ZIP_PW",
                          "--encrypt-to", f"site-1={request.json()['csr']}", "--json")
    finally:
        del os.environ["FLCTL_TEST_ZIP_PW"]
    assert built.code == 0, built.stderr
    return root, {k["name"]: k for k in built.json()["kits"]}, Path(request.json()["key"])


def test_encrypted_zip_round_trip_with_a_passphrase(flctl, sealed_kits, tmp_path, monkeypatch, umask_022):
    """NAME.zip.enc (0600) unpacks with the passphrase into a private kit identical to the one provisioned."""
    _, kits, _ = sealed_kits
    sealed = Path(kits["site-2"]["encrypted_zip"])
    assert stat_mode(sealed) == "600" and b"PRIVATE KEY" not in sealed.read_bytes()
    monkeypatch.setenv("ZIP_PW", "correct horse battery")
    result = flctl("kit", "unpack", sealed, "--passphrase-env", "ZIP_PW", "-o", tmp_path / "in", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["ok"] is True
    kit = tmp_path / "in" / "site-2"
    assert (stat_mode(kit), stat_mode(kit / "startup"), stat_mode(kit / "startup/site.key")) == ("700", "700", "600")
    provisioned = Path(kits["site-2"]["kit"])
    assert (kit / "startup/site.key").read_bytes() == (provisioned / "startup/site.key").read_bytes()


def test_encrypted_zip_round_trip_with_the_sites_own_key(flctl, sealed_kits, tmp_path):
    """A zip encrypted to the key of a site's certificate request opens with that key alone."""
    _, kits, key = sealed_kits
    result = flctl("kit", "unpack", kits["site-1"]["encrypted_zip"], "--key", key, "-o", tmp_path)
    assert result.code == 0, result.stderr
    assert "intact and signed by its project CA" in result.stderr
    wrong = flctl("kit", "unpack", kits["site-2"]["encrypted_zip"], "--key", key, "-o", tmp_path / "other")
    assert wrong.code == 3 and "is encrypted with a passphrase" in wrong.stderr


def test_wrong_passphrase_exits_3_and_writes_nothing(flctl, sealed_kits, tmp_path, monkeypatch):
    _, kits, _ = sealed_kits
    monkeypatch.setenv("ZIP_PW", "not the passphrase")
    result = flctl("kit", "unpack", kits["site-2"]["encrypted_zip"], "--passphrase-env", "ZIP_PW", "-o",
                   tmp_path / "in")
    assert result.code == 3
    assert f"the passphrase does not open {kits['site-2']['encrypted_zip']}" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "in").exists()


def test_tampered_file_exits_2_and_writes_nothing(flctl, sealed_kits, tmp_path, monkeypatch):
    """One changed byte in the ciphertext: refused as damaged or altered, exit 2, nothing unpacked."""
    _, kits, _ = sealed_kits
    data = bytearray(Path(kits["site-2"]["encrypted_zip"]).read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "site-2.zip.enc"
    tampered.write_bytes(bytes(data))
    monkeypatch.setenv("ZIP_PW", "correct horse battery")
    result = flctl("kit", "unpack", tampered, "--passphrase-env", "ZIP_PW", "-o", tmp_path / "in")
    assert result.code == 2
    assert f"{tampered} is damaged or was altered" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "in").exists()


def test_zip_passphrase_must_be_long_and_not_the_cas(flctl, tmp_path, monkeypatch):
    """A short zip passphrase, or the CA's own, is refused (exit 2) before anything is written."""
    monkeypatch.setenv("SHORT", "s3cret")
    short = flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--zip-passphrase-env", "SHORT")
    assert short.code == 2 and "use at least 12" in short.stderr
    monkeypatch.setenv("SAME", "the same long passphrase")
    same = flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--passphrase-env", "SAME", "--zip-passphrase-env",
                 "SAME")
    assert same.code == 2 and "is the CA's passphrase" in same.stderr
    not_a_key = flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--encrypt-to", f"site-1={LOCAL_PROJECT}")
    assert not_a_key.code == 2 and "is not a PEM public key, certificate request or certificate" in not_a_key.stderr
    request = flctl("kit", "request", "nobody", "--org", "o", "-o", tmp_path / "req", "--json").json()
    stranger = flctl("provision", LOCAL_PROJECT, "-w", tmp_path, "--encrypt-to", f"nobody={request['csr']}")
    assert stranger.code == 2 and "--encrypt-to: nobody is not a participant of project 'local'" in stranger.stderr
    assert not (tmp_path / "local").exists()


def test_renew_encrypts_the_renewed_kit_to_the_sites_key(flctl, tmp_path, umask_022):
    """`provision renew --encrypt-to` writes the new NAME.zip.enc (0600) that the site's key opens."""
    request = flctl("kit", "request", "site-1", "--org", "local", "-o", tmp_path / "req", "--json").json()
    assert flctl("provision", LOCAL_PROJECT, "-w", tmp_path / "ws").code == 0
    renewed = flctl("provision", "renew", "site-1", "-p", LOCAL_PROJECT, "-w", tmp_path / "ws", "--encrypt-to",
                    f"site-1={request['csr']}", "--json")
    assert renewed.code == 0, renewed.stderr
    sealed = {k["name"]: k["encrypted_zip"] for k in renewed.json()["kits"]}
    assert sealed["site-2"] is None and stat_mode(sealed["site-1"]) == "600"
    opened = flctl("kit", "unpack", sealed["site-1"], "--key", request["key"], "-o", tmp_path / "in", "--json")
    assert opened.code == 0 and opened.json()["ok"] is True, opened.stderr
