"""A site may change only its own state in a job, and only while its part runs (raw sites on a real server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flctl.node.admin.admin_client import AdminClient
from flctl.node.wire.proto import flctl_pb2 as pb

from .federation import Federation, make_federation
from .job_folders import IDLE, job_folder
from .raw_site import RawSite


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    fed = make_federation(tmp_path, sites=2)
    try:
        fed.start("localhost")
        fed.wait_online([])  # the server answers
        yield fed
    finally:
        fed.stop_all()



def refused(site: RawSite, request: pb.ReportRequest) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        site.stub.Report(request, timeout=10)
    return caught.value.code()  # type: ignore[no-any-return]


def lines(admin: AdminClient, job_id: str) -> list[tuple[str, str]]:
    return [(entry.site, entry.line) for entry in admin.logs(job_id)]


def test_a_site_changes_only_its_own_part_and_only_while_it_runs(fed, tmp_path):
    """site-2 reporting for site-1's job is PERMISSION_DENIED; site-1 reporting after its part ended is
    FAILED_PRECONDITION; nothing of either is stored."""
    with RawSite(fed.kit("site-1")) as one, RawSite(fed.kit("site-2")) as two, \
            AdminClient.from_kit(fed.admin_kit) as admin:
        fed.wait_online(["site-1", "site-2"])
        job_id = admin.submit_job(job_folder(tmp_path, "only-site-1", round_timeout_s=300, script=IDLE))
        deadline = time.monotonic() + 60
        while admin.get_job(job_id).status != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        one.stub.Report(pb.ReportRequest(job_id=job_id, status="running",
                                         logs=[pb.LogLine(time=time.time(), line="site-1 starts")]), timeout=10)
        code = refused(two, pb.ReportRequest(job_id=job_id, status="failed", error="forged by site-2",
                                             logs=[pb.LogLine(time=time.time(), line="forged line")]))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        states = {s.name: s for s in admin.get_job(job_id).sites}
        assert "site-2" not in states and states["site-1"].state != "failed"
        assert ("site-1", "site-1 starts") in lines(admin, job_id)
        assert all("forged" not in line for _, line in lines(admin, job_id))

        admin.abort_job(job_id)
        # After the job ended, the site may say once how its part ended, and then nothing more.
        assert refused(one, pb.ReportRequest(job_id=job_id, status="running")) == grpc.StatusCode.FAILED_PRECONDITION
        one.stub.Report(pb.ReportRequest(job_id=job_id, status="finished",
                                         logs=[pb.LogLine(time=time.time(), line="site-1 stopped")]), timeout=10)
        code = refused(one, pb.ReportRequest(job_id=job_id, status="failed", error="too late",
                                             logs=[pb.LogLine(time=time.time(), line="late line")]))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        final = admin.get_job(job_id)
        assert final.status == "ABORTED"
        assert {s.name: s.state for s in final.sites}["site-1"] == "finished"
        assert ("site-1", "site-1 stopped") in lines(admin, job_id)
        assert all(line != "late line" for _, line in lines(admin, job_id))


def test_a_report_for_an_unknown_job_is_not_found(fed):
    """A report for a job that does not exist is NOT_FOUND."""
    with RawSite(fed.kit("site-1")) as one:
        assert refused(one, pb.ReportRequest(job_id="nosuchjob", status="running")) == grpc.StatusCode.NOT_FOUND
