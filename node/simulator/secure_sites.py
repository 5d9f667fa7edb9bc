"""Secure aggregation in `flctl simulate`: each simulated site's codec, run in the simulation's main process (where
the site filters run too, never in a worker that runs scripts), with keys made for the simulation alone.

A simulation has no kits, so it makes what provisioning would: for `encryption: he`, a CKKS context of the default
parameters (the server side gets its public part through `kit_file`); for `secure_aggregation: masking`, a CA and
a certificate and key per simulated site, with which the sites sign their masking keys. Everything runs in one
process, so a simulation shows the protocol's results and costs, not its protection: the main process holds every
site's keys. HE's final model is kept per site under `<job dir>/sites/<site>/models/final.safetensors`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

from flctl.node.client import api_wire as wire
from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.secagg.payload import SecAggError
from flctl.node.secagg.site_codec import Bytes, HeSiteCodec, SiteCodec
from flctl.node.wire import tensors


class SimSecurity:
    """The simulated sites' codecs and the simulated server kit's files."""

    def __init__(self, codecs: dict[str, SiteCodec], kit_files: dict[str, bytes]) -> None:
        self._codecs = codecs
        self._kit_files = kit_files

    def kit_file(self, name: str) -> bytes:
        try:
            return self._kit_files[name]
        except KeyError:
            raise FileNotFoundError(f"the simulation made no startup/{name}") from None

    def steps(self, task: Task, payload: bytes, sites: Sequence[str]) -> Iterator[TaskResult | SiteFailure]:
        """Each site's answer to a secure step, made here (the step never goes to a worker)."""
        for site in sites:
            codec = self._codecs.get(site)
            if codec is None:
                yield SiteFailure(site, "no such simulated site")
                continue
            try:
                answer, data = codec.step(task, payload)
            except SecAggError as exc:
                yield SiteFailure(site, str(exc))
                continue
            yield TaskResult(site, tensors.decode(bytes(data)), answer.num_examples, answer.metrics, answer.meta)

    def task_in(self, task: Task, payload: bytes, site: str) -> tuple[Task, bytes]:
        given, data = self._codecs[site].task_in(task, payload)
        return given, bytes(data)

    def result_out(self, task: Task, answer: wire.Result, data: Bytes, site: str) -> tuple[wire.Result, bytes]:
        out, sent = self._codecs[site].result_out(task, answer, data)
        return out, bytes(sent)


def sim_security(mode: str, job_id: str, sites: list[str], job_dir: Path) -> SimSecurity | None:
    """What the simulated sites and server need for the job's secure-aggregation `mode` (None for 'none')."""
    if mode == "none":
        return None
    if mode == "he":
        from flctl.provisioner.he_context import SERVER_CONTEXT, make_contexts
        from flctl.provisioner.project import HomomorphicEncryptionSpec

        contexts = make_contexts(HomomorphicEncryptionSpec())
        codecs: dict[str, SiteCodec] = {
            site: HeSiteCodec(contexts.secret, "the simulation's CKKS context", job_dir / "sites" / site)
            for site in sites}
        return SimSecurity(codecs, {SERVER_CONTEXT: contexts.public})
    if mode == "masking":
        from flctl.node.secagg.masking_site import MaskingSiteCodec

        ca_pem, kits = _simulated_pki(sites)
        return SimSecurity({site: MaskingSiteCodec(job_id, site, key, cert, ca_pem)
                            for site, (key, cert) in kits.items()}, {"ca.crt": ca_pem})
    raise SecAggError(f"this flctl does not know the secure aggregation mode {mode!r}")


def _simulated_pki(sites: list[str]) -> tuple[bytes, dict[str, tuple[bytes, bytes]]]:
    """A CA made for this simulation, and each site's key and certificate (PEM) issued by it."""
    from flctl.provisioner import pki
    from flctl.provisioner.project import Participant

    now = dt.datetime.now(dt.UTC)
    ca_key = pki.generate_key("ec-p256")
    ca = pki.build_ca("simulation", ca_key, 1, now)
    issuer = pki.Issuer(ca, ca_key)
    kits = {}
    for site in sites:
        key = pki.generate_key("ec-p256")
        cert = issuer.issue(Participant(site, "site", "simulation", None, ()), key.public_key(), 1, now)
        kits[site] = (pki.key_pem(key), pki.cert_pem(cert))
    return pki.cert_pem(ca), kits

