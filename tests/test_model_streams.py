"""A model over several concurrent streams (`model_streams` in a site's local/resources.yml; issue 29): the cut,
a real federation whose sites take and send models in parts (the final model exact), and a site played over raw
gRPC sending parts that are wrong (refused, saying why) before the right ones (taken, in any order)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.admin.admin_client import AdminClient
from flctl.node.config.resources import load_resources
from flctl.node.security.tls import CHUNK
from flctl.node.wire import model_parts, tensors
from flctl.node.wire.model_buffers import ModelBuffers
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.provisioner.errors import KitError

from .federation import Federation, make_federation
from .raw_site import RawSite

N = 6 * 1024 * 1024  # float32s: a 24 MiB model, up to 6 parts of 4 MiB
SCRIPT = """\
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    params = model.params or {{"w": np.zeros({n}, np.float32), "b": np.arange(7, dtype=np.float64)}}
    params["w"] += 1 + 0.5 * (fl.site_name() == "site-2")
    params["b"] *= 2
    fl.send(fl.Model(params=params, num_examples=1 + (fl.site_name() == "site-2")))
"""
JOB = """\
api_version: 1
name: streams
workflow: {{type: fedavg, args: {{rounds: {rounds}, round_timeout_s: 120}}}}
sites: all
min_sites: {min_sites}
"""


# ---------------------------------------------------------------------- the cut
@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 5 * CHUNK + 3, 100 * CHUNK])
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 16])
def test_ranges_cover_the_model_exactly_on_chunk_boundaries(size, parts):
    cut = model_parts.ranges(size, parts, CHUNK)
    assert len(cut) == parts
    assert cut[0][0] == 0 and cut[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cut)), "contiguous, no gap, no overlap"
    assert all(begin % CHUNK == 0 or begin == size for begin, _ in cut)
    sizes = [end - begin for begin, end in cut]
    assert max(sizes) - min(sizes) <= CHUNK or size < parts * CHUNK


def test_streams_for_keeps_parts_at_least_min_part_bytes():
    assert model_parts.streams_for(100 << 20, 4) == 4
    assert model_parts.streams_for(100 << 20, 1) == 1
    assert model_parts.streams_for(9 << 20, 4) == 2  # two parts of 4.5 MiB, not three of 3
    assert model_parts.streams_for(3 << 20, 8) == 1
    assert model_parts.streams_for(1 << 40, 99) == model_parts.MAX_PARTS
    assert model_parts.check_part(100 << 20, 3, 4) == ""
    assert "numbered 0 to 3" in model_parts.check_part(100 << 20, 4, 4)
    assert "not 3" in model_parts.check_part(9 << 20, 0, 3)
    assert "not 0" in model_parts.check_part(9 << 20, 0, 0)


def test_an_assembly_completes_once_whatever_the_order_and_repeats():
    assembly = model_parts.Assembly(size=12 << 20, parts=3)
    assert [assembly.finish(p) for p in (2, 0, 0, 1, 1)] == [False, False, False, True, False]
    assert assembly.matches(12 << 20, 3) and not assembly.matches(12 << 20, 2)


def test_model_streams_in_resources_yml(tmp_path):
    path = tmp_path / "resources.yml"
    assert load_resources(path).model_streams == 1
    path.write_text("model_streams: 4\n")
    assert load_resources(path).model_streams == 4
    for bad in ("0", "17", "2.5", "many"):
        path.write_text(f"model_streams: {bad}\n")
        with pytest.raises(KitError, match=r"model_streams must be a whole number of streams from 1 to 16"):
            load_resources(path)


# ---------------------------------------------------------------------- a federation
@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = make_federation(tmp_path_factory.mktemp("streams"), sites=2)
    (federation.kit("site-1") / "local" / "resources.yml").write_text("model_streams: 4\n")  # site-2: one stream
    try:
        federation.start("localhost")
        for site in federation.sites:
            federation.start(site)
        federation.wait_online(federation.sites)
        yield federation
    finally:
        federation.stop_all()


def _job(root: Path, rounds: int, min_sites: int) -> Path:
    job = root / "job"
    (job / "app").mkdir(parents=True)
    (job / "job.yml").write_text(JOB.format(rounds=rounds, min_sites=min_sites))
    (job / "app" / "train.py").write_text(SCRIPT.format(n=N))
    return job


def _expected(rounds: int) -> dict[str, np.ndarray]:
    """FedAvg by hand: site-1 adds 1 (1 example), site-2 adds 1.5 (2 examples), both double `b`."""
    w = np.zeros(N, np.float32)
    b = np.arange(7, dtype=np.float64)
    for _ in range(rounds):
        w = ((w + np.float32(1)) * 1 + (w + np.float32(1.5)) * 2) / 3
        b = b * 2
    return {"w": w, "b": b}


def test_sites_take_and_send_models_over_several_streams_and_the_model_is_exact(fed, tmp_path):
    """site-1 asks for 4 streams, site-2 for one: both take part, the final model is FedAvg's by hand, and site-1's
    log says its models went over 4 streams each way. Each site's job process received every model and every
    answer into one buffer, made once and reused (`model_buffers`), and the model is still exact."""
    with AdminClient.from_kit(fed.admin_kit) as admin:
        job_id = admin.submit_job(_job(tmp_path, rounds=3, min_sites=2))
        list(admin.watch(job_id))
        info = admin.get_job(job_id)
        assert info.status == "FINISHED", f"{info.status}: {info.error}\n{fed.logs()}"
        final = load_file(admin.download_job(job_id, tmp_path / "out") / "models" / "final.safetensors")
    for name, value in _expected(3).items():
        np.testing.assert_allclose(final[name], value, rtol=1e-6)
    log = next(p for p in fed.kit("site-1").rglob("job_process.log") if job_id in str(p)).read_text()
    assert log.count("model received, 25.2 MB") == 2
    assert log.count(", 4 streams)") == 5, log  # rounds 1-2 received, rounds 0-2 sent
    other = next(p for p in fed.kit("site-2").rglob("job_process.log") if job_id in str(p)).read_text()
    assert other.count(", 1 stream)") == 6, other  # round 0's empty model too
    for text in (log, other):  # 2 models (round 0's is empty) and 3 answers
        assert "model buffers: 1 made, 4 reused" in text, text


def _fetch(site: RawSite, request: pb.TaskRequest) -> tuple[pb.TaskHeader | None, bytes]:
    header, data = None, bytearray()
    for message in site.stub.FetchTask(request, timeout=60):
        if message.HasField("header"):
            header = message.header
        else:
            data += message.chunk
    return header, bytes(data)


def _parts(job_id: str, task_id: str, data: bytes, parts: int) -> list[tuple[pb.ResultHeader, list[bytes]]]:
    out = []
    for index, (begin, end) in enumerate(model_parts.ranges(len(data), parts, CHUNK)):
        header = pb.ResultHeader(job_id=job_id, task_id=task_id, num_examples=1, size=len(data), part=index,
                                 parts=parts)
        out.append((header, [data[i:min(end, i + CHUNK)] for i in range(begin, end, CHUNK)]))
    return out


def _refused(site: RawSite, code: grpc.StatusCode, phrase: str, header: pb.ResultHeader, chunks: list[bytes]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        site.submit(header, chunks)
    assert caught.value.code() == code, caught.value.details()
    assert phrase in (caught.value.details() or ""), caught.value.details()


def test_wrong_parts_are_refused_saying_why_and_right_ones_in_any_order_are_taken(fed, tmp_path):
    """site-1 over raw gRPC: a model's parts fetched over 4 streams equal the whole; parts of another task or out of
    range are refused; result parts with a wrong count, an index out of range, headers that disagree, too many or
    too few bytes are refused with the reason; then the right parts, out of order and one sent twice, are taken
    once the last arrives, and the final model is exact."""
    fed.stop("site-1")
    try:
        with RawSite(fed.kit("site-1")) as site, AdminClient.from_kit(fed.admin_kit) as admin:
            fed.wait_online(["site-1"])
            job_id = admin.submit_job(_job(tmp_path, rounds=2, min_sites=2))
            last = ""
            for round_no in range(2):
                task, _ = site.next_task(job_id, last)
                assert task.round == round_no
                model: dict[str, np.ndarray] = {}
                if round_no:
                    model = _fetch_in_parts(site, job_id, last, task.task_id)
                w = model.get("w", np.zeros(N, np.float32)) + 1
                b = model.get("b", np.arange(7, dtype=np.float64)) * 2
                data = tensors.encode({"w": w, "b": b})
                parts = _parts(job_id, task.task_id, data, 3)
                if round_no:
                    _wrong_parts_then_right_ones(site, parts)
                else:
                    acks = [site.submit(header, chunks).message for header, chunks in parts]
                    assert acks == ["part 0 of 3 received", "part 1 of 3 received", "accepted"]
                last = task.task_id
            list(admin.watch(job_id))
            info = admin.get_job(job_id)
            assert info.status == "FINISHED", f"{info.status}: {info.error}\n{fed.logs()}"
            final = load_file(admin.download_job(job_id, tmp_path / "out") / "models" / "final.safetensors")
    finally:
        fed.start("site-1")
        fed.wait_online(["site-1"])
    for name, value in _expected(2).items():
        np.testing.assert_allclose(final[name], value, rtol=1e-6)
    results = fed.kit("localhost").rglob("results/*")
    assert not [p for p in results if p.name.endswith(".part")], "no half-received result is left behind"


def _fetch_in_parts(site: RawSite, job_id: str, last: str, task_id: str) -> dict[str, np.ndarray]:
    """Task `task_id` fetched over 4 streams (checked against it fetched over one), and parts asked for wrongly."""
    header, first = _fetch(site, pb.TaskRequest(job_id=job_id, last_task_id=last, streams=4))
    assert header is not None and header.task_id == task_id and header.parts == 4
    cut = model_parts.ranges(header.size, 4, CHUNK)
    assert len(first) == cut[0][1]
    rest = [_fetch(site, pb.TaskRequest(job_id=job_id, task_id=task_id, part=i, streams=4)) for i in range(1, 4)]
    assert all(h is None for h, _ in rest), "a part comes without the header"
    whole = first + b"".join(d for _, d in rest)
    assert whole == site.fetch_task(job_id, last)[1], "the parts make the model sent in one"
    wrong = ((pb.TaskRequest(job_id=job_id, task_id="0123456789ab", part=1, streams=4), grpc.StatusCode.NOT_FOUND),
             (pb.TaskRequest(job_id=job_id, task_id=task_id, part=4, streams=4), grpc.StatusCode.INVALID_ARGUMENT))
    for request, code in wrong:
        with pytest.raises(grpc.RpcError) as caught:
            _fetch(site, request)
        assert caught.value.code() == code, caught.value.details()
    return tensors.decode(whole)


def _wrong_parts_then_right_ones(site: RawSite, parts: list[tuple[pb.ResultHeader, list[bytes]]]) -> None:
    inv = grpc.StatusCode.INVALID_ARGUMENT
    (h0, c0), (h1, c1), (h2, c2) = parts
    _refused(site, inv, "not 9", pb.ResultHeader(**{**_fields(h0), "parts": 9}), c0)
    _refused(site, inv, "numbered 0 to 2", pb.ResultHeader(**{**_fields(h0), "part": 3}), c0)
    _refused(site, inv, "ended after", h1, c1[:-1])
    _refused(site, inv, "larger than", h1, [*c1, b"x"])
    _refused(site, inv, "an earlier part said 3 parts", pb.ResultHeader(**{**_fields(h1), "parts": 2}), c1)
    assert site.submit(h2, c2).message == "part 2 of 3 received"
    assert site.submit(h0, c0).message == "part 0 of 3 received"
    assert site.submit(h0, c0).message == "part 0 of 3 received"  # sent again: written again
    assert site.submit(h1, c1).message == "accepted"
    assert "ignored" in site.submit(h1, c1).message, "a part of an answered task is not taken"


def _fields(header: pb.ResultHeader) -> dict[str, object]:
    return {field.name: value for field, value in header.ListFields()}


# ---------------------------------------------------------------------- a peer without parts
class _OnePartPeer:
    """FetchTask and SubmitResult of a peer that cuts no models into parts (a relay; a server from before them):
    its task headers leave `parts` at 0, and it records the result streams a site opens."""

    def __init__(self, model: bytes) -> None:
        self.model = model
        self.submitted: list[list[pb.ResultMessage | bytes]] = []

    def fetch(self, request: pb.TaskRequest, timeout: float) -> Iterator[pb.TaskMessage | bytes]:
        yield pb.TaskMessage(header=pb.TaskHeader(task_id="t1", kind="train", size=len(self.model)))
        for start in range(0, len(self.model), CHUNK):
            yield pb.TaskMessage(chunk=self.model[start:start + CHUNK])

    def submit(self, messages: Iterator[pb.ResultMessage | bytes], timeout: float) -> pb.Ack:
        self.submitted.append(list(messages))
        return pb.Ack(message="accepted")


def test_a_site_set_to_several_streams_sends_over_one_to_a_peer_that_takes_no_parts():
    """A site with `model_streams: 4` under a relay: the relay's task header names no parts, so the site takes the
    model on one stream and sends its answer on one stream too (four would reach the relay as four partial results)."""
    from flctl.node.client import api_wire as wire
    from flctl.node.site import model_transfer

    # Prepare: a 24 MiB model (big enough for 4 parts of at least 4 MiB), a site asking for 4 streams
    model = tensors.encode({"w": np.arange(N, dtype=np.float32)})
    peer = _OnePartPeer(model)
    calls = model_transfer.ModelCalls.__new__(model_transfer.ModelCalls)
    calls.fetch, calls.submit, calls.streams = peer.fetch, peer.submit, 4
    calls.buffers = ModelBuffers(keep=1)
    assert model_parts.streams_for(len(model), calls.streams) == 4
    # Execute
    header, data = model_transfer.fetch_task(calls, "job-1", "")
    model_transfer.submit_result(calls, "job-1", header.task_id, wire.Result(task_id=1, num_examples=1), data)
    # Assert: the model arrived whole, and the answer went as one stream with no part fields set
    assert bytes(data) == model
    assert calls.streams == 1
    [stream] = peer.submitted
    first = stream[0]
    assert isinstance(first, pb.ResultMessage) and first.header.parts == 0 and first.header.size == len(model)
