"""How kits are made fast: forked helper processes, one-pass rendering, zips written by hand, ext4 placement."""

from __future__ import annotations

import array
import datetime as dt
import fcntl
import io
import os
import zipfile
from pathlib import Path

import pytest
import yaml

from flctl.provisioner import build, dir_spread, fork_pool
from flctl.provisioner.build import provision
from flctl.provisioner.errors import ProvisionError
from flctl.provisioner.kit_files import KitFile, KitRenderer, config_for, dump_config, yaml_scalar
from flctl.provisioner.kit_writer import zip_bytes
from flctl.provisioner.project_loader import load_project, project_from_document
from flctl.provisioner.signing import verify_kit
from flctl.provisioner.yaml_source import parse_yaml

SITES = 7
PROJECT = ("api_version: 1\nname: many\nserver: {name: fl.example.org, org: acme, hosts: [10.0.0.5]}\nsites:\n"
           + "".join(f"  - {{name: site-{i}, org: org_{i % 3}}}\n" for i in range(1, SITES + 1))
           + "admins: [{name: admin@example.org, org: acme, role: lead}]\n")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_forked_helpers_make_every_kit(write_project, tmp_path):
    """With three processes every kit is written, verifies, and is recorded in order, as with one."""
    project = load_project(write_project(PROJECT)).project
    seen: list[tuple[int, int, str]] = []
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    result = provision(project, tmp_path / "a", now=now, workers=3, progress=lambda *args: seen.append(args))
    alone = provision(project, tmp_path / "b", now=now, workers=1)
    assert [k.name for k in result.kits] == [p.name for p in project.participants()]
    assert [(k.name, k.status, k.not_after) for k in result.kits] == [
        (k.name, k.status, k.not_after) for k in alone.kits]
    for kit in result.kits:
        assert verify_kit(kit.kit_dir).ok, kit.name
        assert zipfile.ZipFile(kit.zip_path).testzip() is None
    assert sorted(tree(result.prod_dir)) == sorted(tree(alone.prod_dir))
    total = len(result.kits)
    assert [done for done, _, _ in seen] == list(range(1, total + 1))
    assert {name for _, _, name in seen} == {k.name for k in result.kits}
    assert all(t == total for _, t, _ in seen)
    again = provision(project, tmp_path / "a", now=now, workers=3)
    assert {k.status for k in again.kits} == {"kept"}
    for kit in result.kits:
        for name in ("ca.crt", f"{kit.kind}.crt", f"{kit.kind}.key"):
            assert (again.prod_dir / kit.name / "startup" / name).read_bytes() == (
                kit.kit_dir / "startup" / name).read_bytes()


def test_a_helper_that_fails_leaves_nothing_half_written(write_project, tmp_path, monkeypatch):
    """A disk error in a forked helper is raised here as the same OSError; no prod or temporary folder stays."""
    project = load_project(write_project(PROJECT)).project
    real = build.write_zip

    def failing_zip(path, top, files, now):
        if top == project.participants()[-1].name:  # in the last helper's slice
            raise OSError(28, "No space left on device", str(path))
        real(path, top, files, now)

    monkeypatch.setattr(build, "write_zip", failing_zip)
    with pytest.raises(OSError, match="No space left") as caught:
        provision(project, tmp_path, workers=3)
    assert caught.value.errno == 28
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == [".lock"]


def test_a_helper_with_a_bug_reports_its_traceback(write_project, tmp_path, monkeypatch):
    project = load_project(write_project(PROJECT)).project

    real = build.write_zip

    def broken(path, top, files, now):
        if top == project.participants()[-1].name:  # in the helper's slice
            raise KeyError("oops")
        real(path, top, files, now)

    monkeypatch.setattr(build, "write_zip", broken)
    with pytest.raises(RuntimeError, match=r"(?s)kit-building process failed.*KeyError: 'oops'"):
        provision(project, tmp_path, workers=2)
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == [".lock"]


def test_provision_errors_cross_the_fork(write_project, tmp_path):
    """A CA that expired is reported by whichever process meets it, as the same ProvisionError."""
    project = load_project(write_project(PROJECT + "ca: {valid_days: 10}\n")).project
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    provision(project, tmp_path, now=now, workers=1)
    with pytest.raises(ProvisionError, match=r"cannot issue a certificate for .*the project CA expired"):
        provision(project, tmp_path, now=now + dt.timedelta(days=400), workers=3)


def test_a_killed_helper_is_reported(tmp_path):
    def work(i: int) -> int:
        if i == 3:
            os.kill(os.getpid(), 9)
        return i

    with pytest.raises(ProvisionError, match="killed by signal 9"):
        fork_pool.run_sliced(list(range(4)), work, 2)
    assert fork_pool.run_sliced(list(range(5)), lambda i: i * i, 3) == [0, 1, 4, 9, 16]
    assert fork_pool.run_sliced([1], lambda i: i, 4) == [1]


def test_helpers_are_only_forked_when_it_pays_and_is_safe(monkeypatch):
    """Few kits, or a process with other threads (forking would copy their locks), stay in-process."""
    monkeypatch.setattr(fork_pool.threading, "active_count", lambda: 1)  # whatever earlier tests left running
    assert fork_pool.worker_count(10, 100) == 1
    cpus = len(os.sched_getaffinity(0))
    assert fork_pool.worker_count(100_000, 100) == cpus
    monkeypatch.setattr(fork_pool.threading, "active_count", lambda: 2)
    assert fork_pool.worker_count(100_000, 100) == 1


TRICKY = ["site-1", "true", "NO", "null", "1.0", "1e3", "0x1F", "007", "a.b", "on", "y", "Off", "1", "nan",
          "2025-01-01", "1_000", "abc_DEF-9", "e1"]
TRICKY_ADMINS = ["%x@y.org", "+a@b.c", "admin@example.org", ".a@b.c", "-a@b.c", "yes@no"]


def test_config_files_are_what_pyyaml_writes_for_each_participant():
    """Filling name/org/role into one dump per kind gives the bytes of dumping each config whole."""
    text = ("api_version: 1\nname: p\nserver: {name: localhost, org: 'off'}\nsites:\n"
            + "".join(f"  - {{name: '{n}', org: '{n}'}}\n" for n in TRICKY)
            + "admins:\n" + "".join(f"  - {{name: '{a}', org: 'true', role: lead}}\n" for a in TRICKY_ADMINS))
    project = project_from_document(parse_yaml(text, "p.yml")).project
    renderer = KitRenderer(project)
    for who in project.participants():
        rendered = renderer.config(who)
        assert rendered == dump_config(config_for(project, who)).encode(), who.name
        assert yaml.safe_load(rendered)["name"] == who.name
    for value in [*TRICKY, *TRICKY_ADMINS, "True", "~", "-a", ".inf", "a b"]:
        assert yaml_scalar(value) == yaml.dump({"k": value}, Dumper=yaml.SafeDumper)[3:-1], value


def test_zips_are_byte_for_byte_what_zipfile_writes():
    now = dt.datetime(2026, 3, 7, 13, 45, 59, tzinfo=dt.UTC)
    files = {"startup/site.key": KitFile(b"secret\n" * 40, 0o600), "startup/start.sh": KitFile(b"#!/bin/sh\n", 0o755),
             "local/policy.yml": KitFile(b"", 0o644), "startup/ca.crt": KitFile(bytes(range(256)), 0o644)}
    for top in ("site-1", "admin@example.org", "sïte"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for rel, f in sorted(files.items()):
                info = zipfile.ZipInfo(f"{top}/{rel}", date_time=now.timetuple()[:6])
                info.external_attr = (0o100000 | f.mode) << 16
                archive.writestr(info, f.data)
        assert zip_bytes(top, files, now) == buffer.getvalue(), top


def _flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, dir_spread.FS_IOC_GETFLAGS, flags, True)
        return flags[0]
    finally:
        os.close(fd)


def test_spreading_hint_is_set_and_cleared_where_supported(local_kits, tmp_path):
    """On ext4 the folder gets the top-of-hierarchy flag and loses it again; elsewhere nothing happens."""
    folder = tmp_path / "kits"
    folder.mkdir()
    if not dir_spread.mark_top(folder):
        pytest.skip(f"{tmp_path} is on a file system without the hint")
    assert _flags(folder) & dir_spread.FS_TOPDIR_FL
    assert dir_spread.mark_top(folder, on=False)
    assert not _flags(folder) & dir_spread.FS_TOPDIR_FL
    assert not _flags(local_kits.prod_dir) & dir_spread.FS_TOPDIR_FL, "a finished prod_NN keeps no flag"
    assert not dir_spread.mark_top(tmp_path / "missing")


def test_the_cycle_collector_is_paused_only_inside_the_block():
    """gc_pause.paused() turns the cycle collector off inside and back to what it was after, on errors too."""
    import gc

    from flctl.provisioner import gc_pause

    # Prepare
    assert gc.isenabled()
    # Execute / Assert
    with gc_pause.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_pause.paused():
        raise RuntimeError("a kit failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_pause.paused():
            pass
        assert not gc.isenabled(), "a collector that was off stays off"
    finally:
        gc.enable()
