"""Property-based tests: hostile bundles and arbitrary project files never escape, crash or half-write."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flctl.node.errors import JobError
from flctl.node.jobs.bundle import BundleLimits, extract_bundle
from flctl.provisioner.errors import InputError
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

NAME_PARTS = st.sampled_from(["job.yml", "app", "..", ".", "", "/", "etc", "passwd", "a b", "x.py", "\\", "~"])
ENTRY = st.lists(NAME_PARTS, min_size=1, max_size=4).map("/".join)


def zip_of(entries: list[tuple[str, bytes, bool]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, symlink in entries:
            info = zipfile.ZipInfo(name or "empty")
            if symlink:
                info.external_attr = (0o120777 << 16)
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(ENTRY, st.binary(max_size=64), st.booleans()), min_size=1, max_size=6))
def test_extraction_never_writes_outside_its_target(entries):
    """Whatever the entries, extraction either succeeds inside the target or refuses with JobError."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outside = root / "outside"
        outside.mkdir()
        target = root / "inside" / "job"
        target.parent.mkdir()
        try:
            extract_bundle(zip_of(entries), target, BundleLimits(max_files=5))
        except JobError:
            assert not target.exists(), "a refused bundle leaves nothing behind"
        else:
            for path in target.rglob("*"):
                assert path.resolve().is_relative_to(target.resolve())
                assert not path.is_symlink()
        assert list(outside.iterdir()) == []
        assert sorted(p.name for p in root.iterdir()) == ["inside", "outside"]
        leftovers = [p for p in target.parent.iterdir() if p != target]
        assert leftovers == []


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_is_refused_as_a_bundle(data):
    """Bytes that are not a zip are refused with JobError (never a crash), and nothing is written."""
    assume(not zipfile.is_zipfile(io.BytesIO(data)))
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(JobError):
            extract_bundle(data, Path(tmp) / "job")
        assert list(Path(tmp).iterdir()) == []


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=12),
                    st.sampled_from(["site-1", "org_a", "localhost", "lead", "ec-p256", "10.0.0.5"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=12)
KEYS = st.sampled_from(["api_version", "name", "server", "sites", "admins", "ca", "certs", "heartbeat", "org",
                        "port", "hosts", "role", "participants", "type", "builders", "extra"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=7), st.sampled_from([1, 3]))
def test_project_loader_either_accepts_or_names_the_problem(data, version):
    """Any mapping: a valid Project, or InputError whose every problem names the file."""
    import yaml

    text = yaml.safe_dump({**data, "api_version": version})
    try:
        loaded = project_from_document(parse_yaml(text, "p.yml"))
    except InputError as exc:
        assert exc.problems
        assert all(p.file == "p.yml" and p.message for p in exc.problems)
    else:
        assert loaded.project.server.name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_project_loader_survives_any_text(text):
    try:
        project_from_document(parse_yaml(text, "p.yml"))
    except InputError as exc:
        assert all(p.file == "p.yml" for p in exc.problems)
