"""Private set intersection (NVIDIA FLARE's `DhPSIController`): the sites learn which of their IDs all of them share,
the first step of vertical federated learning, with OpenMined's ECDH PSI run between pairs of sites. Sites reach
only the server, so the server relays the PSI messages, opaque bytes, from one site to another as tasks addressed
to that site alone; it learns sizes, never an ID. The sites' part runs in their script processes (`fl.psi`,
`flctl.node.client.psi`), where their IDs and keys stay.

The sites go one at a time against the running intersection (a chain, in `order`): forward, site k (the PSI
client) intersects its own IDs with what site k-1 holds (the PSI server), so site k then holds the intersection of
sites 1..k; the last site holds the intersection of all. Backward, each site intersects what it holds with what
the site after it holds, now the final intersection. Then each site writes the intersection to its job workspace
(`psi/intersection.txt`). As in NVIDIA FLARE's PSI, site k learns on the way the intersection of sites 1..k (a
superset of the final one), each PSI server learns the size of its client's set, and the server learns every
set's size. That holds against a server that relays as this workflow does (honest but curious): the messages are
not signed from site to site, so a server forging a request of its own could test guessed IDs against a site's set.

A site whose IDs are unusable (empty, mixed types, a type other than the other sites'), that fails or stays
silent for `site_timeout_s`, or that sends a message its peer cannot read, is dropped with the reason: it is told
its part failed, and the chain starts over without it, so the others' result is the intersection of theirs alone
(nothing of the dropped site's IDs is in it). The job needs `min_sites` sites (and at least 2) that finish.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import ClassVar, cast

from pydantic import Field

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "psi"
MESSAGES = {TaskKind.PSI_REQUEST: ("psi_request",), TaskKind.PSI_RESPONSE: ("psi_setup", "psi_response")}
"""The opaque messages an answer of each kind must carry (one-dimensional uint8 arrays)."""
DROP_WAIT_S = 30.0
"""How long a dropped site is waited for to acknowledge that its part failed (it may be gone)."""


class PsiArgs(WorkflowArgs):
    """`workflow.args` of a `psi` job."""

    order: list[str] | None = Field(None, description="The sites in the order they join the running intersection "
                                                      "(default: the job's sites in order)")
    site_timeout_s: float = Field(600.0, gt=0, description="Seconds each PSI step waits for a site's answer "
                                                           "(a step over a million IDs takes a minute or more)")

    @property
    def rounds(self) -> int:
        """The intersection is one round: what `flctl job show` and `--watch` count."""
        return 1


class _Dropped(Exception):
    """A site must leave the intersection: `site`, and why."""

    def __init__(self, site: str, reason: str) -> None:
        super().__init__(reason)
        self.site = site
        self.reason = reason


class Psi(Workflow):
    """Relay ECDH PSI messages between the sites, one site at a time, until each holds the intersection of all."""

    type_name: ClassVar[str] = "psi"
    Args: ClassVar[type[WorkflowArgs]] = PsiArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 2) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(PsiArgs, args)  # checked by Workflow.__init__
        self.dropped: dict[str, str] = {}

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        sites = fed.sites()
        order = [site for site in self.settings.order if site in sites] if self.settings.order else list(sites)
        counts = self._load_ids(fed, order)
        parties = [site for site in order if site not in self.dropped]
        while True:
            self._enough(parties)
            try:
                size = self._chain(fed, parties)
                break
            except _Dropped as drop:
                self._drop(fed, drop.site, drop.reason)
                parties.remove(drop.site)
                fed.log(f"psi: starting over without {drop.site} ({len(parties)} sites)")
        written = self._finish(fed, parties, size)
        report = {"sites": parties, "intersection_size": size, "set_sizes": {s: counts[s] for s in parties},
                  "dropped": dict(self.dropped), "written_by": written}
        fed.save_report(REPORT, report)
        fed.record_round(0, {site: {"intersection_size": float(size)} for site in written})
        fed.log(f"psi: the intersection of {', '.join(parties)} has {size} IDs; each site wrote it to its "
                "psi/intersection.txt")
        return {}

    def _enough(self, parties: list[str]) -> None:
        need = max(2, self.min_sites)
        if len(parties) < need:
            by_reason: dict[str, list[str]] = {}
            for site, reason in self.dropped.items():
                by_reason.setdefault(reason, []).append(site)
            why = "; ".join(f"{', '.join(sites)}: {reason}" for reason, sites in by_reason.items()) or "too few sites"
            raise WorkflowError(f"psi needs {need} sites but {len(parties)} can take part ({why})")

    def _load_ids(self, fed: Federation, order: list[str]) -> dict[str, int]:
        """Ask every site to load and check its IDs; drop those that cannot, or whose ID type differs from the
        others'. Each site's count of distinct IDs."""
        answers = self._answers(fed, Task(TaskKind.PSI_ITEMS, 0, {}), order)
        counts: dict[str, int] = {}
        types: dict[str, str] = {}
        for site in order:
            answer = answers.get(site)
            if not isinstance(answer, TaskResult):
                self._drop(fed, site, answer.reason if answer else self._silent())
                continue
            count, kind = answer.meta.get("count"), answer.meta.get("id_type")
            if not isinstance(count, int) or count < 1 or kind not in ("str", "int"):
                self._drop(fed, site, f"it answered psi_items with count {count!r} and id_type {kind!r}")
                continue
            counts[site], types[site] = count, kind
        if len(set(types.values())) > 1:
            tally = Counter(types.values()).most_common()
            if tally[0][1] == tally[1][1]:
                listed = ", ".join(f"{site} {kind}" for site, kind in types.items())
                for site in list(types):
                    self._drop(fed, site, f"the sites' IDs are of different types ({listed})")
                self._enough([])
            usual = tally[0][0]
            for site, kind in list(types.items()):
                if kind != usual:
                    self._drop(fed, site, f"its IDs are {kind} where the other sites' are {usual}")
        return counts

    def _chain(self, fed: Federation, parties: list[str]) -> int:
        """Forward then backward along `parties`; the size of the final intersection."""
        size = 0
        for k in range(1, len(parties)):
            size = self._step(fed, client=parties[k], server=parties[k - 1], client_set="own",
                              server_set="own" if k == 1 else "current")
            fed.log(f"psi: {parties[k]} joined the running intersection ({k + 1} of {len(parties)} sites)")
        for k in range(len(parties) - 2, -1, -1):
            got = self._step(fed, client=parties[k], server=parties[k + 1], client_set="current",
                             server_set="current")
            if got != size:
                raise _Dropped(parties[k + 1], f"the intersection it passed back has {got} IDs, not {size}")
        return size

    def _step(self, fed: Federation, client: str, server: str, client_set: str, server_set: str) -> int:
        """One ECDH PSI between two sites: `client` ends up holding the intersection of both sets; its size."""
        asked = self._one(fed, Task(TaskKind.PSI_REQUEST, 0, {}, meta={"set": client_set}), client)
        request = {name: asked.params[name] for name in MESSAGES[TaskKind.PSI_REQUEST]}
        task = Task(TaskKind.PSI_RESPONSE, 0, request, meta={"set": server_set, "client_size": asked.meta.get("size")})
        answered = self._one(fed, task, server, peer=client)
        reply = {name: answered.params[name] for name in MESSAGES[TaskKind.PSI_RESPONSE]}
        done = self._one(fed, Task(TaskKind.PSI_INTERSECT, 0, reply), client, peer=server)
        size = done.meta.get("size")
        if not isinstance(size, int) or size < 0:
            raise _Dropped(client, f"it answered psi_intersect with size {size!r}")
        return size

    def _one(self, fed: Federation, task: Task, site: str, peer: str = "") -> TaskResult:
        """`site`'s answer to `task`, its messages checked; `_Dropped` names who is at fault when there is none: the
        site (failed, silent, malformed), or `peer`, whose message the site could not read."""
        answer = self._answers(fed, task, [site]).get(site)
        if answer is None:
            raise _Dropped(site, self._silent())
        if isinstance(answer, SiteFailure):
            raise _Dropped(site, answer.reason)
        error = answer.meta.get("psi_error")
        if error and peer:
            raise _Dropped(peer, f"{site} could not use its message: {error}")
        for name in MESSAGES.get(task.kind, ()):
            value = answer.params.get(name)
            if value is None or value.dtype.name != "uint8" or value.ndim != 1:
                raise _Dropped(site, f"its {task.kind.value} answer carries no {name} message (bytes)")
        return answer

    def _answers(self, fed: Federation, task: Task, sites: list[str],
                 timeout_s: float | None = None) -> dict[str, TaskResult | SiteFailure]:
        got: dict[str, TaskResult | SiteFailure] = {}
        answers: Iterable[TaskResult | SiteFailure] = fed.send(task, sites, timeout_s or self.settings.site_timeout_s)
        try:
            for answer in answers:
                if answer.site in sites and answer.site not in got:
                    got[answer.site] = answer
        finally:  # the step is over: the federation may drop what it holds for the task
            close = getattr(answers, "close", None)
            if close is not None:
                close()
        return got

    def _silent(self) -> str:
        return f"no answer within {self.settings.site_timeout_s:g} s"

    def _drop(self, fed: Federation, site: str, reason: str) -> None:
        """Take `site` out, tell it why (its script fails with the reason), and log it."""
        self.dropped[site] = reason
        fed.log(f"psi: {site} is left out: {reason}")
        task = Task(TaskKind.PSI_DONE, 0, {}, meta={"failed": reason})
        self._answers(fed, task, [site], min(DROP_WAIT_S, self.settings.site_timeout_s))  # its answer: its failure

    def _finish(self, fed: Federation, parties: list[str], size: int) -> list[str]:
        """Tell every site the intersection is final (each writes it); the sites that did."""
        answers = self._answers(fed, Task(TaskKind.PSI_DONE, 0, {}, meta={"size": size}), parties)
        written = []
        for site in parties:
            answer = answers.get(site)
            if isinstance(answer, TaskResult) and answer.meta.get("size") == size:
                written.append(site)
            else:
                why = answer.reason if isinstance(answer, SiteFailure) else \
                    self._silent() if answer is None else f"it holds {answer.meta.get('size')!r} IDs, not {size}"
                self.dropped[site] = f"could not write the intersection: {why}"
                fed.log(f"psi: {site} could not write the intersection: {why}")
        if len(written) < max(2, self.min_sites):
            raise WorkflowError(f"psi: only {len(written)} sites wrote the intersection ({', '.join(written)})")
        return written
