"""Masking at a site, in its job process (`site_codec`'s seam): the key steps (`TaskKind.SECURE`: mask_keys,
mask_shares, mask_unmask) answered with the site's certificate key and fresh X25519 keys the script never sees, and
every model the script answers quantized, weighted by its examples, and masked before it leaves.

A round's state (its private keys, self-mask seed, the shares it holds) lives here from the key steps to the
unmasking, and is dropped when the next round's keys are made. A step for another round than the one under way is
refused, and a training task without the round's masking meta is answered with nothing in clear.
"""

from __future__ import annotations

from dataclasses import replace

from flctl.node.client import api_wire as wire
from flctl.node.jobs.tasks import Params, Task, TaskKind
from flctl.node.secagg.layout import ModelLayout
from flctl.node.secagg.mask_crypto import b64, unb64
from flctl.node.secagg.masking import Advert, MaskingSite, quantize
from flctl.node.secagg.payload import SecAggError, pack
from flctl.node.secagg.site_codec import Bytes, SiteCodec, _full, _views
from flctl.node.wire import tensors
from flctl.node.workflows.masking_round import MODE, VALUES


class MaskingSiteCodec(SiteCodec):
    """Secure aggregation by masking at one site."""

    mode = MODE

    def __init__(self, job_id: str, site: str, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
        self._job_id, self._site = job_id, site
        self._key_pem, self._cert_pem, self._ca_pem = key_pem, cert_pem, ca_pem
        self._round: MaskingSite | None = None
        self._trained: int | None = None  # the round whose training task brought the masking meta
        self._given: Params = {}
        self._participants: list[str] = []
        self._bad_shares: list[str] = []

    def step(self, task: Task, payload: Bytes) -> tuple[wire.Result, Bytes]:
        step, round_no = task.meta.get("step"), task.meta.get("round")
        if step == "mask_keys":
            if not isinstance(round_no, int):
                raise SecAggError("the server's mask_keys step names no round")
            self._round = MaskingSite(self._job_id, round_no, self._site, self._key_pem, self._cert_pem,
                                      self._ca_pem)
            self._trained = None
            return self._answer({"advert": self._round.advertise().as_json()}), tensors.encode({})
        current = self._current(round_no, str(step))
        if step == "mask_shares":
            raw = task.meta.get("keys")
            threshold = task.meta.get("threshold")
            if not isinstance(raw, dict) or not isinstance(threshold, int):
                raise SecAggError("the server's mask_shares step carries no keys or threshold")
            adverts = {name: Advert.from_json(name, value) for name, value in raw.items()}
            sealed = current.share(adverts, threshold)
            return self._answer({"shares": {name: b64(data) for name, data in sealed.items()}}), tensors.encode({})
        if step == "mask_unmask":
            if self._trained != current.round:
                raise SecAggError(f"the server asked to unmask round {current.round}, for which this site uploaded "
                                  "nothing")
            survivors, dropped = task.meta.get("survivors"), task.meta.get("dropped")
            if not isinstance(survivors, list) or not isinstance(dropped, list):
                raise SecAggError("the server's mask_unmask step names no survivors and dropped sites")
            return self._answer({"reveal": current.reveal(survivors, dropped)}), tensors.encode({})
        raise SecAggError(f"the server asked for the secure step {step!r}, which secure_aggregation: masking does "
                          "not have")

    def task_in(self, task: Task, payload: Bytes) -> tuple[Task, memoryview]:
        meta = dict(task.meta)
        info = meta.pop("mask", None)
        self._given = _views(payload, "the task's")
        if task.kind != TaskKind.TRAIN:
            return replace(task, meta=meta), memoryview(payload)
        if not isinstance(info, dict):
            raise SecAggError(f"the server sent round {task.round + 1}'s training task without its masking keys; this "
                              "site sends nothing in clear")
        current = self._current(info.get("round"), "train")
        shares = (info.get("shares") or {}).get(self._site)
        participants = info.get("participants")
        if not isinstance(shares, dict) or not isinstance(participants, list):
            raise SecAggError(f"round {current.round}'s training task carries no shares or participants for "
                              f"{self._site}")
        left_out = current.receive({sender: unb64(data, f"{sender}'s share") for sender, data in shares.items()})
        self._participants = [str(p) for p in participants]
        self._bad_shares = left_out
        self._trained = current.round
        return replace(task, meta=meta), memoryview(payload)

    def result_out(self, task: Task, answer: wire.Result, payload: Bytes) -> tuple[wire.Result, Bytes]:
        params = _views(payload, "the script's")
        if not params:  # metrics only
            return answer, payload
        if task.kind != TaskKind.TRAIN or self._round is None or self._trained != self._round.round:
            raise SecAggError(f"the script answered a {task.kind} task with a model, which secure_aggregation: "
                              "masking never sends in clear")
        meta = dict(answer.meta)
        params = _full(params, meta, self._given)
        try:
            layout = ModelLayout.of(params)
            quantized = quantize(layout.flatten(params), answer.num_examples)
        except ValueError as exc:
            raise SecAggError(f"the script's model cannot be masked: {exc}") from None
        masked = self._round.masked(quantized, self._participants)
        header = {"mode": MODE, "round": self._round.round, "layout": layout.as_json(), "weight": answer.num_examples}
        if self._bad_shares:
            meta["mask_shares_refused"] = sorted(self._bad_shares)
        return replace(answer, meta=meta), tensors.encode(pack(header, {VALUES: masked}))

    def _current(self, round_no: object, step: str) -> MaskingSite:
        if self._round is None:
            raise SecAggError(f"the server asked for the masking step {step} before the round's keys were made")
        if round_no != self._round.round:
            raise SecAggError(f"the server's masking step {step} is for round {round_no!r}, but the round under way "
                              f"at this site is {self._round.round}")
        return self._round

    def _answer(self, meta: dict[str, object]) -> wire.Result:
        assert self._round is not None
        return wire.Result(0, 0, {}, {"round": self._round.round, **meta})
