"""A site's side of secure aggregation, in the site's job process: between the privacy filters and the network.

What the script sends out (after the site's filters) is encrypted (HE) or masked here before it leaves; what a task
brings in encrypted is decrypted here before the script's filters and the script see it. The script never holds a
key and cannot send in clear: a job whose job.yml asks for a mode has every model it answers go through the codec,
whatever the server's task says (a server cannot turn it off). `SiteCodec.step` answers the mode's own tasks
(`TaskKind.SECURE`), which never reach the script.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path

import numpy as np

from flctl.node.client import api_wire as wire
from flctl.node.config.kit import NodeKit
from flctl.node.jobs.tasks import PARAMS_TYPE, Params, Task, TaskKind
from flctl.node.secagg.payload import SecAggError, is_secure
from flctl.node.wire import tensors
from flctl.provisioner.he_context import CLIENT_CONTEXT

Bytes = bytes | memoryview


class SiteCodec(ABC):
    """One job's secure-aggregation mode at one site."""

    mode: str

    @abstractmethod
    def task_in(self, task: Task, payload: Bytes) -> tuple[Task, memoryview]:
        """The task and the params' bytes the site's filters and script are given for `task` (decrypted or as they
        came; the mode's own meta taken out)."""

    @abstractmethod
    def result_out(self, task: Task, answer: wire.Result, payload: Bytes) -> tuple[wire.Result, Bytes]:
        """What goes to the server for the script's (filtered) `answer`: never its params in clear."""

    @abstractmethod
    def step(self, task: Task, payload: Bytes) -> tuple[wire.Result, Bytes]:
        """The answer to one of the mode's own tasks (`TaskKind.SECURE`)."""


class HeSiteCodec(SiteCodec):
    """CKKS at a site: encrypts every model it sends weighted by its examples, decrypts the sums it is sent."""

    mode = "he"

    def __init__(self, secret: bytes, source: str, job_dir: Path) -> None:
        from flctl.node.secagg.he import CkksKeys

        self.keys = CkksKeys(secret, source)
        if not self.keys.can_decrypt:
            raise SecAggError(f"{source} holds no secret key; give the site its kit as provisioned")
        self._job_dir = job_dir
        self._given: Params = {}  # the model the script was last given: a diff it answers is added to it

    def task_in(self, task: Task, payload: Bytes) -> tuple[Task, memoryview]:
        params = _views(payload, "the task's")
        if not is_secure(params):  # round 0's initial model (public: it came with the job), or nothing
            self._given = params
            return task, memoryview(payload)
        self._given = self.keys.decrypt(params, f"the task's (round {task.round + 1})")
        return task, memoryview(tensors.encode(self._given))

    def result_out(self, task: Task, answer: wire.Result, payload: Bytes) -> tuple[wire.Result, Bytes]:
        if task.kind == TaskKind.STATISTICS:
            return self._statistics_out(task, answer)
        params = _views(payload, "the script's")
        if not params:  # metrics only (an evaluate task's answer)
            return answer, payload
        meta = dict(answer.meta)
        params = _full(params, meta, self._given)
        try:
            sealed = self.keys.encrypt(params, answer.num_examples)
        except ValueError as exc:
            raise SecAggError(f"the script's model cannot be encrypted: {exc}") from None
        return replace(answer, meta=meta), tensors.encode(sealed)

    def _statistics_out(self, task: Task, answer: wire.Result) -> tuple[wire.Result, Bytes]:
        """A statistics answer (as the site's rules released it) with its counts and sums encrypted, one value per
        feature the job names (0 for one the site did not release), and nothing else of its figures in clear: which
        features it released, refused or lacks, and its policy, stay readable."""
        figures = answer.meta.get("statistics")
        names = task.meta.get("features")
        if not isinstance(figures, dict) or figures.get("error") or not isinstance(names, list):
            return answer, tensors.encode({})  # an error, said as it is
        released = figures.get("features") or {}
        counts = np.array([float((released.get(n) or {}).get("count") or 0) for n in names], np.float64)
        sums = np.array([float((released.get(n) or {}).get("sum") or 0) for n in names], np.float64)
        sealed = self.keys.encrypt({"count": counts, "sum": sums}, 1.0)
        shown = {"step": figures.get("step"), "policy": figures.get("policy"), "encrypted": True,
                 "features": {n: {} for n in names if n in released},
                 **{part: figures[part] for part in ("refused", "missing") if part in figures}}
        return wire.Result(answer.task_id, 1, {}, {"statistics": shown}), tensors.encode(sealed)

    def step(self, task: Task, payload: Bytes) -> tuple[wire.Result, Bytes]:
        if task.meta.get("step") == "he_decrypt_sum":
            totals, count = self.keys.decrypt_sum(_views(payload, "the summed statistics'"), "the summed statistics'")
            if count < 2:
                raise SecAggError(f"the server asked to decrypt a sum of {count} site's figures: that would reveal "
                                  "one site's; this site decrypts sums of two or more only")
            return wire.Result(0, 0, {}, {"totals": {k: v.tolist() for k, v in totals.items()}}), tensors.encode({})
        if task.meta.get("step") != "he_final":
            raise SecAggError(f"the server asked for the secure step {task.meta.get('step')!r}, which encryption: he "
                              "does not have")
        model = self.keys.decrypt(_views(payload, "the final model's"), "the final model's")
        path = self._job_dir / "models" / "final.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tensors.write_file(tmp, model)
        tmp.replace(path)
        return wire.Result(0, 0, {}, {"kept": str(path)}), tensors.encode({})


def _full(params: Params, meta: dict[str, object], given: Params) -> Params:
    """The script's answer as a model: a diff (meta's params_type, taken out) added to the model it was `given`."""
    if meta.pop(PARAMS_TYPE, "full") != "diff":
        return params
    from flctl.node.workflows.aggregation import full_params

    try:
        return full_params(params, "diff", lambda: given)
    except ValueError as exc:
        raise SecAggError(f"the script's diff cannot be added to the model it was given: {exc}") from None


def _views(payload: Bytes, whose: str) -> Params:
    try:
        return tensors.views(payload) if len(payload) else {}
    except ValueError as exc:
        raise SecAggError(f"{whose} params cannot be read: {exc}") from None


def site_codec(mode: str, kit: NodeKit, job_dir: Path, job_id: str) -> SiteCodec | None:
    """The codec of a job's `mode` at the site of `kit` (None for 'none'); SecAggError saying what the site lacks
    (its kit has no HE context…), which refuses the job there."""
    if mode == "none":
        return None
    if mode == "masking":
        from flctl.node.secagg.masking_site import MaskingSiteCodec

        return MaskingSiteCodec(job_id, kit.info.name, kit.key_pem, kit.cert_pem, kit.ca_pem)
    if mode == "he":
        path = kit.root / "startup" / CLIENT_CONTEXT
        try:
            secret = path.read_bytes()
        except OSError:
            raise SecAggError(f"the job asks for encryption: he (job.yml workflow.args.encryption), but this site's "
                              f"kit has no HE context (startup/{CLIENT_CONTEXT} is missing); provision the project "
                              "with homomorphic_encryption in project.yml and start the site from its new kit"
                              ) from None
        return HeSiteCodec(secret, f"this site's startup/{CLIENT_CONTEXT}", job_dir)
    raise SecAggError(f"this site's flctl does not know the secure aggregation mode {mode!r}; upgrade it")
