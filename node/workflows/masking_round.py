"""Secure aggregation by masking, as a workflow drives it (`secure_sum`'s seam): each round runs two key steps
before the training task and one unmasking step after it, as `TaskKind.SECURE` tasks the sites' job processes
answer (`flctl.node.secagg.masking` holds the protocol; this module relays and sums).

1. `mask_keys`: every site advertises two public keys signed with its certificate;
2. `mask_shares`: the server relays every advert; each site checks them all and answers its sealed shares; a site
   that fails, or answers for another round, is left out of the round (nothing of it is ever revealed);
3. the training task carries, for each site, the shares sealed for it, and the round's participants; the sites
   answer masked, quantized updates, which `MaskSum` adds;
4. `mask_unmask`: the sites whose upload arrived reveal their shares; with t of them the masks come off and the
   round's average is made. Fewer than t: the round, and the job, fail saying why; never a model from a sum
   that still holds masks.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.secagg.layout import ModelLayout
from flctl.node.secagg.masking import Advert, Aggregate, default_threshold, dequantize
from flctl.node.secagg.payload import SecAggError, field, header_of, is_secure
from flctl.node.workflows.base import Federation, WorkflowError
from flctl.node.workflows.secure_sum import SECURE_META, SecureRound, SecureSum

MODE = "masking"
VALUES = "@mask/values"
MAX_META_BYTES = 6 * 2**20
"""The most the training task's meta may take (it travels in one gRPC message of at most 8 MiB, with the rest of
the task's header): every site's sealed shares, n (n - 1) of them, about 240 bytes each."""


class MaskSum(SecureSum):
    """Adds the sites' masked uploads; `result` runs the unmasking step and gives the round's average."""

    def __init__(self, fed: Federation, aggregate: Aggregate, timeout_s: float) -> None:
        self._fed, self._aggregate, self._timeout = fed, aggregate, timeout_s
        self._layout: ModelLayout | None = None

    def add(self, answer: TaskResult) -> None:
        if not is_secure(answer.params):
            raise ValueError("it sent its model in clear, but the job asks for secure_aggregation: masking; nothing "
                             "of it is used")
        whose = f"{answer.site}'s"
        try:
            header = header_of(answer.params, whose)
            if header.get("mode") != MODE or header.get("round") != self._aggregate.round:
                raise SecAggError(f"{whose} upload is of mode {header.get('mode')!r} for round {header.get('round')!r}"
                                  f", not {MODE!r} for round {self._aggregate.round}")
            layout = ModelLayout.from_json(header.get("layout"))
            weight = field(header, "weight", int, whose)
        except (SecAggError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        if weight != answer.num_examples or weight < 0:
            raise ValueError(f"its upload states weight {weight}, but it answered num_examples {answer.num_examples}")
        if self._layout is not None and layout != self._layout:
            raise ValueError(f"its model layout (tensors {layout.names()}) differs from the other sites'")
        values = np.asarray(answer.params.get(VALUES, np.zeros(0, np.uint64)))
        if values.size != layout.size:
            raise ValueError(f"its {VALUES} holds {values.size} values, its layout {layout.size}")
        self._aggregate.add(answer.site, values.reshape(-1), weight)
        self._layout = layout
        self.count += 1

    def result(self) -> Params:
        aggregate, fed = self._aggregate, self._fed
        if self._layout is None:
            raise WorkflowError(f"round {aggregate.round + 1}: no site uploaded a masked update")
        survivors, dropped = sorted(aggregate.uploaded), aggregate.dropped()
        task = Task(TaskKind.SECURE, aggregate.round, {}, meta={
            "step": "mask_unmask", SECURE_META: MODE, "round": aggregate.round, "survivors": survivors,
            "dropped": dropped})
        reveals: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        for answer in fed.send(task, survivors, self._timeout):
            if isinstance(answer, SiteFailure):
                failed[answer.site] = answer.reason
                continue
            reveal = answer.meta.get("reveal")
            if answer.meta.get("round") != aggregate.round or not isinstance(reveal, dict):
                failed[answer.site] = f"answered the unmasking of round {answer.meta.get('round')!r} without shares"
                continue
            reveals[answer.site] = reveal
            if len(reveals) >= aggregate.threshold and aggregate.enough(reveals):
                break  # t sites' shares remove every mask: the others are not waited for
        for site, reason in sorted(failed.items()):
            fed.log(f"round {aggregate.round + 1}: {site} did not unmask: {reason}")
        if dropped:
            fed.log(f"round {aggregate.round + 1}: {', '.join(dropped)} dropped before uploading; their masks removed "
                    "through the others' shares")
        try:
            total = aggregate.total(reveals)
        except SecAggError as exc:
            silent = [s for s in survivors if s not in reveals and s not in failed]
            raise WorkflowError(f"{exc}" + (f" (no answer from {', '.join(silent)})" if silent else "")) from None
        if aggregate.weight <= 0:
            raise WorkflowError(f"round {aggregate.round + 1}: every site answered num_examples 0: a masked sum "
                                "cannot be averaged; send the number of examples each site trained on")
        return self._layout.unflatten(dequantize(total, aggregate.weight))


class MaskingRound(SecureRound):
    """Secure aggregation by masking: two key steps before each round's training, one unmasking step after."""

    mode: ClassVar[str] = MODE

    def __init__(self, fed: Federation, min_sites: int, threshold: int) -> None:
        try:  # the sites sign their keys with certificates of the federation's CA: one needs a provisioned federation
            fed.kit_file("ca.crt")
        except OSError as exc:
            raise WorkflowError(f"secure_aggregation: masking needs sites with certificates of the project's CA: "
                                f"{exc}") from None
        self._min_sites, self._threshold = min_sites, threshold
        self._aggregate: Aggregate | None = None

    def prepare(self, fed: Federation, round_no: int, sites: list[str],
                timeout_s: float) -> tuple[dict[str, object], list[str]]:
        keys = Task(TaskKind.SECURE, round_no, {}, meta={"step": "mask_keys", SECURE_META: MODE, "round": round_no})
        adverts: dict[str, Advert] = {}
        for answer in self._answers(fed, keys, sites, timeout_s, round_no, "keys"):
            try:
                adverts[answer.site] = Advert.from_json(answer.site, answer.meta.get("advert"))
            except SecAggError as exc:
                fed.log(f"round {round_no + 1}: {answer.site}'s masking keys are refused: {exc}")
        threshold = self._threshold or default_threshold(len(adverts))
        self._enough(round_no, len(adverts), threshold, "advertised masking keys")
        relay = Task(TaskKind.SECURE, round_no, {}, meta={
            "step": "mask_shares", SECURE_META: MODE, "round": round_no, "threshold": threshold,
            "keys": {name: advert.as_json() for name, advert in sorted(adverts.items())}})
        shares: dict[str, dict[str, str]] = {}
        for answer in self._answers(fed, relay, sorted(adverts), timeout_s, round_no, "shares"):
            sealed = answer.meta.get("shares")
            if not isinstance(sealed, dict) or set(sealed) != set(adverts) - {answer.site} or \
                    not all(isinstance(v, str) for v in sealed.values()):
                fed.log(f"round {round_no + 1}: {answer.site} is left out: its mask shares are not one for each other "
                        "site")
                continue
            shares[answer.site] = sealed
        participants = sorted(shares)
        self._enough(round_no, len(participants), threshold, "sent their mask shares")
        self._aggregate = Aggregate(fed.job_id, round_no, adverts, threshold, participants)
        by_receiver = {name: {sender: sealed[name] for sender, sealed in shares.items() if sender != name}
                       for name in participants}
        meta: dict[str, object] = {SECURE_META: MODE, "mask": {"round": round_no, "threshold": threshold,
                                            "participants": participants, "shares": by_receiver}}
        size = len(json.dumps(meta))
        if size > MAX_META_BYTES:
            raise WorkflowError(f"round {round_no + 1}: the sealed mask shares of {len(participants)} sites take "
                                f"{size / 2**20:.1f} MiB, more than one training task carries "
                                f"({MAX_META_BYTES / 2**20:g} MiB): masking takes up to about 150 sites a job")
        return meta, participants

    def new_sum(self, fed: Federation, round_no: int, sites: list[str], timeout_s: float) -> SecureSum:
        if self._aggregate is None or self._aggregate.round != round_no:
            raise WorkflowError(f"round {round_no + 1}: the masking key steps did not run")
        return MaskSum(fed, self._aggregate, timeout_s)

    def _answers(self, fed: Federation, task: Task, sites: list[str], timeout_s: float, round_no: int,
                 what: str) -> list[TaskResult]:
        """The sites' answers to a key step; a site that fails, or answers for another round, is logged and left
        out of the round (its part fails; nothing of it is revealed)."""
        out = []
        for answer in fed.send(task, sites, timeout_s):
            if isinstance(answer, SiteFailure):
                fed.log(f"round {round_no + 1}: {answer.site} is left out of the masking: {answer.reason}")
            elif answer.meta.get("round") != round_no:
                fed.log(f"round {round_no + 1}: {answer.site} is left out: it sent mask {what} for round "
                        f"{answer.meta.get('round')!r}, not {round_no}; nothing of it is revealed")
            else:
                out.append(answer)
        return out

    def _enough(self, round_no: int, count: int, threshold: int, what: str) -> None:
        need = max(threshold, self._min_sites, 2)
        if count < need:
            raise WorkflowError(f"round {round_no + 1}: {count} sites {what}, fewer than the {need} secure aggregation "
                                f"needs (threshold {threshold}, min_sites {self._min_sites})")
