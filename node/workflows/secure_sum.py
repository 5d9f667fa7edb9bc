"""The server's side of secure aggregation: the one seam both modes plug into (`flctl.node.secagg` holds their
maths and the sites' side).

A round-based workflow (FedAvg and the workflows built on it) asks `secure_round` for the job's mode, then each round:
`prepare` (masking: the key steps; HE: nothing) gives extra task meta, `new_sum` makes the round's sum, which takes
the sites' opaque answers (`add`) and gives the round's result (`result`: HE, the encrypted sum; masking, the
average once the masks are removed); `finish` ends the job (HE: the sites decrypt the final model and keep it).
The plain path (no secure aggregation) never comes here: its speed is unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.secagg.payload import SecAggError, is_secure
from flctl.node.workflows.base import Federation, WorkflowError

SECURE_META = "secure_aggregation"
"""The task meta key that names the job's secure-aggregation mode (the sites know it from job.yml anyway)."""


class SecureSum(ABC):
    """One round's sum of the sites' opaque answers."""

    count: int = 0

    @abstractmethod
    def add(self, answer: TaskResult) -> None:
        """Add a site's answer; ValueError naming what is wrong, changing nothing, when it cannot be added."""

    @abstractmethod
    def result(self) -> Params:
        """The round's result: what the next task carries and the round's checkpoint holds."""


class SecureRound(ABC):
    """A secure-aggregation mode as a workflow drives it."""

    mode: ClassVar[str]

    def prepare(self, fed: Federation, round_no: int, sites: list[str],
                timeout_s: float) -> tuple[dict[str, object], list[str]]:
        """Steps before the round's training task: the meta that task carries besides the workflow's own, and the
        sites it goes to (masking: those that took part in the key steps)."""
        return {SECURE_META: self.mode}, sites

    @abstractmethod
    def new_sum(self, fed: Federation, round_no: int, sites: list[str], timeout_s: float) -> SecureSum:
        """The sum of round `round_no`'s answers."""

    def finish(self, fed: Federation, model: Params, sites: list[str], timeout_s: float) -> None:  # noqa: B027
        """After the last round (the final model is saved): what the mode still has to do (nothing by default)."""


class HeSum(SecureSum):
    """Adds the sites' ciphertexts (CKKS) with the server's public context: the server never decrypts."""

    def __init__(self, total: object) -> None:
        from flctl.node.secagg.he import CiphertextSum

        assert isinstance(total, CiphertextSum)
        self._total = total

    def add(self, answer: TaskResult) -> None:
        if not is_secure(answer.params):
            raise ValueError("it sent its model in clear, but the job asks for encryption: he; nothing of it is used")
        if answer.num_examples < 0:
            raise ValueError(f"num_examples {answer.num_examples} is negative")
        try:
            self._total.add(answer.params, answer.num_examples, answer.site)
        except SecAggError as exc:
            raise ValueError(str(exc)) from None
        self.count = self._total.count

    def result(self) -> Params:
        if self._total.weight <= 0:
            raise WorkflowError("every site answered num_examples 0: an encrypted sum cannot be averaged; send the "
                                "number of examples each site trained on")
        return self._total.result()


class HeRound(SecureRound):
    """Homomorphic encryption: sites encrypt their weighted models, the server adds the ciphertexts."""

    mode: ClassVar[str] = "he"

    def __init__(self, fed: Federation) -> None:
        from flctl.node.secagg.he import CkksKeys
        from flctl.provisioner.he_context import SERVER_CONTEXT

        where = f"the server's kit (startup/{SERVER_CONTEXT})"
        try:
            data = fed.kit_file(SERVER_CONTEXT)
        except OSError as exc:
            raise WorkflowError(f"the job asks for encryption: he (job.yml workflow.args.encryption), but there is no "
                                f"HE context in {where}: {exc}; provision the project with homomorphic_encryption "
                                "in project.yml and start the server from its new kit") from None
        try:
            self.keys = CkksKeys(data, where)
        except SecAggError as exc:
            raise WorkflowError(str(exc)) from None
        if self.keys.can_decrypt:
            raise WorkflowError(f"{where} holds a secret key: the server must never; provision again")

    def new_sum(self, fed: Federation, round_no: int, sites: list[str], timeout_s: float) -> SecureSum:
        from flctl.node.secagg.he import CiphertextSum

        return HeSum(CiphertextSum(self.keys))

    def finish(self, fed: Federation, model: Params, sites: list[str], timeout_s: float) -> None:
        """Send the encrypted final model to the sites, which decrypt it and keep it (their job folder's
        models/final.safetensors); a site that fails is logged, the job is not failed for it."""
        task = Task(TaskKind.SECURE, -1, model, meta={"step": "he_final", SECURE_META: self.mode}, saved_as="final")
        kept = []
        for answer in fed.send(task, sites, timeout_s):
            if isinstance(answer, SiteFailure):
                fed.log(f"final model: {answer.site} could not decrypt it: {answer.reason}")
            else:
                kept.append(answer.site)
        fed.log(f"final model: encrypted on the server; decrypted and kept by {len(kept)} of {len(sites)} sites"
                + (f" ({', '.join(sorted(kept))})" if kept else ""))


def secure_mode_of(args: object) -> str:
    """The secure-aggregation mode a job's workflow arguments ask for ('none' for a workflow that has none)."""
    mode = getattr(args, "secure_mode", None)
    return str(mode()) if callable(mode) else "none"


def secure_round(mode: str, fed: Federation, min_sites: int = 1, threshold: int = 0) -> SecureRound | None:
    """The job's secure-aggregation mode, ready to drive (None for 'none'); masking's `threshold` (0: a majority of
    each round's sites) and the workflow's `min_sites`."""
    if mode == "none":
        return None
    if mode == "he":
        return HeRound(fed)
    if mode == "masking":
        from flctl.node.workflows.masking_round import MaskingRound

        return MaskingRound(fed, min_sites, threshold)
    raise WorkflowError(f"unknown secure aggregation mode {mode!r}")
