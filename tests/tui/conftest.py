"""Console tests: local times read in UTC so that recorded screens are the same everywhere; one live federation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ..federation import ADMIN, Federation, make_federation

MEMBER = ("viewer@hub.org", "hub", "member")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="package")
def live_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A server and two sites as real processes, with a project_admin and a member admin."""
    federation = make_federation(tmp_path_factory.mktemp("tuifed"), admins=[ADMIN, MEMBER])
    try:
        federation.start("localhost")
        for site in federation.sites:
            federation.start(site)
        federation.wait_online(federation.sites)
        yield federation
    finally:
        federation.stop_all()
