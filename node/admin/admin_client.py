"""The admin client: a typed Python API over the Admin service, used by the CLI, the TUI and scripts.

    with AdminClient.from_kit(Path("workspace/demo/prod_00/admin@example.org")) as admin:
        job_id = admin.submit_job(Path("playbooks/jobs/hello-numpy"))
        for event in admin.watch(job_id):
            print(event.message)

Every gRPC failure becomes one `flctl.node.errors` exception with a sentence saying what to do.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc

from flctl.node import errors
from flctl.node.admin import admin_types as t
from flctl.node.config.kit import NodeKit, load_kit
from flctl.node.security.tls import CHUNK, channel
from flctl.node.wire import serde
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc
from flctl.provisioner.errors import KitError

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 30.0


def translate(exc: grpc.RpcError, target: str, kit: NodeKit | None = None) -> errors.NodeError:
    """One gRPC status -> one exception of ours, with a sentence that says what to do."""
    code = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        if "handshake" in details.lower() or "ssl" in details.lower() or "certificate" in details.lower():
            from flctl.node.security.tls import server_certificate_problem

            problem = server_certificate_problem(kit) if kit is not None else None
            if problem:
                return errors.ConnectionFailed(f"cannot connect to the server at {target}: {problem}")
            return errors.ConnectionFailed(f"the server at {target} refused this kit's certificate; check that the "
                                           "kit belongs to this project, and that the clocks of this machine and "
                                           "the server agree")
        return errors.ConnectionFailed(f"cannot reach the server at {target}; is it running? ({details})")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.ConnectionFailed(f"the server at {target} did not accept this identity: {details}")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return errors.NotPermitted(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.BadRequest(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.TimedOut(f"the server at {target} did not answer in time")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return errors.Failed(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.Failed(f"the server at {target} refused the call: {details}")
    return errors.NodeError(f"the server failed: {code.name}: {details}")


_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_job_id(job_id: str) -> None:
    """BadRequest unless `job_id` could be a job id (letters, digits, '-' and '_'): it names a folder here."""
    if not _JOB_ID.fullmatch(job_id):
        raise errors.BadRequest(f"{job_id!r} is not a job id (letters, digits, '-' and '_', as `flctl job ls` "
                                "shows them); nothing was downloaded")


class AdminClient:
    def __init__(self, kit: NodeKit, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if kit.info.kind != "admin":
            raise KitError(f"{kit.root} is a {kit.info.kind} kit ({kit.info.name}), but this command needs an admin's "
                           "startup kit; pass one with --kit DIR or FLCTL_KIT")
        self.kit = kit
        self.timeout_s = timeout_s
        self._channel = channel(kit)
        self._stub = pb_grpc.AdminStub(self._channel)

    @classmethod
    def from_kit(cls, path: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> AdminClient:
        return cls(load_kit(path, verify=True), timeout_s)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout or self.timeout_s)
        except grpc.RpcError as exc:
            raise translate(exc, self.kit.target, self.kit) from None

    def _stream(self, method: Any, request: Any, timeout: float | None = None) -> Iterator[Any]:
        try:
            yield from method(request, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise translate(exc, self.kit.target, self.kit) from None

    # ------------------------------------------------------------------ calls
    def whoami(self) -> t.Identity:
        return serde.identity_from_pb(self._call(self._stub.WhoAmI, pb.Empty()))

    def submit_job(self, folder: Path, valid_for_s: float | None = None,
                   progress: Callable[[int, int | None], None] | None = None, model_from: str | None = None) -> str:
        """Validate the job folder here, send it as a zip bundle, and return the new job's id. Sites start it only
        within `valid_for_s` of now (default `job_signing.VALID_FOR_S`). A Flower app folder (pyproject.toml naming
        a ServerApp and a ClientApp, no job.yml) is sent as a `flower` job (`flctl.node.flower.flower_job`). With
        `model_from` (a job id), the job runs that finished job's final model: its job.yml is sent with
        `initial_model: job:<model_from>` (`flctl.node.jobs.model_from`; ValueError for an id that names no job).

        `progress(bytes read, total)` is called while the folder is packed.
        """
        from flctl.node.flower.flower_job import as_job
        from flctl.node.jobs import job_signing
        from flctl.node.jobs.bundle import pack_job
        from flctl.node.jobs.job_spec import load_job

        with tempfile.TemporaryDirectory(prefix="flctl-flower-") as tmp:  # a Flower app folder becomes a flower job
            folder = as_job(folder, Path(tmp) / "job") or folder
            if model_from is not None:
                from flctl.node.jobs.model_from import with_model_from

                folder = with_model_from(folder, model_from, Path(tmp) / "model-from")
            spec = load_job(folder).spec
            data = pack_job(folder, progress=progress)
        digest = hashlib.sha256(data).hexdigest()
        # The job id is chosen here and signed with the job, so the server cannot run the bundle under another.
        claims = job_signing.new_claims(data, spec.name, "all" if spec.sites == "all" else list(spec.sites),
                                        valid_for_s=valid_for_s or job_signing.VALID_FOR_S).to_json()
        signature = job_signing.sign_claims(claims, self.kit.key_pem)

        def messages() -> Iterator[pb.SubmitMessage]:
            yield pb.SubmitMessage(header=pb.SubmitHeader(sha256=digest, size=len(data), signature=signature,
                                                          signer_cert_pem=self.kit.cert_pem, claims_json=claims))
            view = memoryview(data)
            for start in range(0, len(data), CHUNK):
                yield pb.SubmitMessage(chunk=bytes(view[start:start + CHUNK]))

        ref = self._call(self._stub.SubmitJob, messages(), timeout=max(self.timeout_s, 300))
        return str(ref.job_id)

    def list_jobs(self) -> list[t.JobInfo]:
        return [serde.job_from_pb(j) for j in self._call(self._stub.ListJobs, pb.Empty()).jobs]

    def get_job(self, job_id: str) -> t.JobInfo:
        return serde.job_from_pb(self._call(self._stub.GetJob, pb.JobRef(job_id=job_id)))

    def abort_job(self, job_id: str) -> t.JobInfo:
        return serde.job_from_pb(self._call(self._stub.AbortJob, pb.JobRef(job_id=job_id), timeout=60))

    def delete_job(self, job_id: str) -> str:
        """Remove an ended job from the server (its folder and records); the server's sentence."""
        return str(self._call(self._stub.DeleteJob, pb.JobRef(job_id=job_id)).message)

    def download_job(self, job_id: str, out_dir: Path,
                     progress: Callable[[int, int | None], None] | None = None) -> Path:
        """Unpack the job's artifacts (models, metrics, logs) into `out_dir/<job_id>/` and return that folder.

        `progress(bytes received, total or None)` is called as the archive arrives.
        """
        check_job_id(job_id)
        target = out_dir / job_id
        created = not target.exists()
        target.mkdir(parents=True, exist_ok=True)
        archive = target / ".artifacts.zip.part"
        try:
            self._fetch_artifacts(job_id, archive, progress)
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    if name.startswith("/") or ".." in Path(name).parts:
                        raise errors.NodeError(f"the server sent an unsafe path in the artifacts: {name}")
                zf.extractall(target)
        except zipfile.BadZipFile as exc:
            archive.unlink(missing_ok=True)
            raise errors.NodeError(f"the server sent damaged artifacts for job {job_id} ({exc}); "
                                   "download it again") from None
        except BaseException:  # a failed or interrupted download leaves no partial file (nor a folder it made)
            archive.unlink(missing_ok=True)
            if created and not any(target.iterdir()):
                target.rmdir()
            raise
        archive.unlink()
        return target

    def _fetch_artifacts(self, job_id: str, archive: Path, progress: Callable[[int, int | None], None] | None) -> None:
        received = 0
        with open(archive, "wb") as handle:
            try:
                call = self._stub.DownloadJob(pb.JobRef(job_id=job_id), timeout=3600)
                sizes = [str(v) for k, v in call.initial_metadata() or () if k == t.DOWNLOAD_SIZE_HEADER]
                total = int(sizes[0]) if sizes and sizes[0].isdigit() else None
                for chunk in call:
                    handle.write(chunk.data)
                    received += len(chunk.data)
                    if progress is not None:
                        progress(received, total)
            except grpc.RpcError as exc:
                raise translate(exc, self.kit.target) from None

    def logs(self, job_id: str, site: str = "", follow: bool = False) -> Iterator[t.LogEntry]:
        request = pb.LogsRequest(job_id=job_id, site=site, follow=follow)
        for entry in self._stream(self._stub.JobLogs, request, timeout=None if follow else self.timeout_s):
            yield serde.log_from_pb(entry)

    def job_metrics(self, job_id: str) -> list[t.MetricValue]:
        """Every metric value the job's sites reported, in the order the server stored them."""
        return [serde.metric_from_pb(value) for batch in self._stream(self._stub.JobMetrics, pb.JobRef(job_id=job_id))
                for value in batch.values]

    def list_sites(self) -> list[t.SiteInfo]:
        return [serde.site_from_pb(s) for s in self._call(self._stub.ListSites, pb.Empty()).sites]

    def list_certificates(self) -> list[t.CertificateInfo]:
        """Every participant's certificate the server knows, soonest to expire first."""
        reply = self._call(self._stub.ListCertificates, pb.Empty())
        return [serde.certificate_from_pb(c) for c in reply.certificates]

    def publish_crl(self, crl_pem: bytes) -> str:
        """Install a newer CRL on the server (project_admin only); it applies at once."""
        return str(self._call(self._stub.PublishCrl, pb.CrlRequest(crl_pem=crl_pem)).message)

    def watch(self, job_id: str = "", after_seq: int = 0) -> Iterator[t.Event]:
        """Events as they happen; for one job the stream ends after the job's final event."""
        for event in self._stream(self._stub.WatchEvents, pb.WatchRequest(job_id=job_id, after_seq=after_seq)):
            yield serde.event_from_pb(event)
