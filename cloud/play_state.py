"""The state machine of `flctl play`, pure: events in, states out. Nothing here reads a file or the clock.

Every participant of a playbook moves through

    planned -> provisioned -> delivered -> started -> healthy -> verified

`flctl play` appends one Event to the playbook's journal the moment something happens (a kit made, a
release uploaded and verified on its host, a node started, found healthy, a smoke job finished) and the
state of the whole play is the fold of that journal (`fold`). A run interrupted anywhere (Ctrl-C,
SIGKILL, a host down) therefore resumes from the last recorded event, and `next_actions` says what is
left to do from a state and the facts of this run, so a run with nothing changed does nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FAILED = "failed"
"""The event of a step that failed (a play event, not a job's or a site's status)."""

STATES = ("planned", "provisioned", "delivered", "started", "healthy", "verified")
"""The states of a participant, in order; each one implies the ones before it."""

EVENT_KINDS = frozenset({
    "project",  # the project was provisioned: data {digest, prod_dir}
    "planned",  # the participant is in the playbook: data {host}
    "provisioned",  # its kit (content digest) is ready to deliver: data {digest, certificate}
    "delivered",  # the kit with this digest is installed and verified on its host: data {digest}
    "started",  # its node was started (or found running)
    "healthy",  # its node is healthy
    "verified",  # a smoke job it took part in finished: data {job}
    "lost",  # a check found its node not healthy any more: data {reason}
    "failed",  # the step after its state failed: data {reason, connection}
    "removed",  # no longer in the playbook, its node stopped: data {node (stopped, not running, never started), host}
    "job_submitted",  # a smoke job was submitted: data {job, name, participants}
    "job_ended",  # that job ended: data {job, status}
    "interrupted",  # Ctrl-C stopped the run: data {phase}; the events before say where each participant stands
})


@dataclass(frozen=True)
class Event:
    """One thing that happened, as recorded in the journal; `at` is seconds since the epoch."""

    kind: str
    at: float
    participant: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown play event {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "at": self.at}
        if self.participant is not None:
            out["participant"] = self.participant
        if self.data:
            out["data"] = self.data
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(str(data["kind"]), float(data["at"]), data.get("participant"), dict(data.get("data") or {}))


@dataclass(frozen=True)
class Participant:
    """Where one participant stands: its state, the kit digest provisioned and delivered, and why it stopped."""

    name: str
    state: str = "planned"
    host: str = ""
    digest: str = ""  # the content digest of the kit provisioned for it
    delivered: str = ""  # the digest of the kit its host runs (verified there)
    certificate: str = ""  # new, kept or reissued, from the last provisioning
    reason: str = ""  # why the step after `state` failed; empty when it did not
    connection: bool = False  # that failure was a failure to connect
    times: dict[str, float] = field(default_factory=dict)  # state -> when it was last reached

    def at_least(self, state: str) -> bool:
        return STATES.index(self.state) >= STATES.index(state)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Job:
    """A smoke job submitted; `status` empty while it has not ended."""

    id: str
    name: str
    participants: tuple[str, ...]
    status: str = ""


@dataclass(frozen=True)
class PlayState:
    """The whole play: the project provisioned last and every participant."""

    project_digest: str = ""
    prod_dir: str = ""
    participants: dict[str, Participant] = field(default_factory=dict)
    jobs: tuple[Job, ...] = ()
    interrupted: str = ""  # the phase Ctrl-C stopped the last run in, while no later event was recorded

    @property
    def pending_job(self) -> Job | None:
        """The last smoke job submitted, when it has not ended (a resumed run waits for it, not submitting again)."""
        return self.jobs[-1] if self.jobs and not self.jobs[-1].status else None


def _reach(p: Participant, state: str, at: float) -> Participant:
    """`p` moved forward to `state` (the states in between reached at the same time), its failure cleared."""
    times = dict(p.times)
    for name in STATES[STATES.index(p.state) + 1: STATES.index(state) + 1]:
        times[name] = at
    times[state] = at
    return dataclasses.replace(p, state=state, times=times, reason="", connection=False)


def _back(p: Participant, state: str) -> Participant:
    """`p` moved back to `state` (never forward): what it had reached past it is forgotten."""
    if STATES.index(p.state) <= STATES.index(state):
        return p
    keep = STATES[: STATES.index(state) + 1]
    return dataclasses.replace(p, state=state, times={k: v for k, v in p.times.items() if k in keep})


def step(state: PlayState, event: Event) -> PlayState:
    """The state after `event`. Events that make no sense where they arrive (a node started before its kit was
    ever provisioned) move nothing back: the journal only records what happened."""
    kind, at, name = event.kind, event.at, event.participant
    if state.interrupted and kind != "interrupted":  # a later run goes on from where that one stopped
        state = dataclasses.replace(state, interrupted="")
    if kind == "project":
        return dataclasses.replace(state, project_digest=str(event.data["digest"]),
                                   prod_dir=str(event.data["prod_dir"]))
    if kind == "interrupted":
        return dataclasses.replace(state, interrupted=str(event.data.get("phase", "")))
    if kind == "job_submitted":
        job = Job(str(event.data["job"]), str(event.data.get("name", "")), tuple(event.data.get("participants", ())))
        return dataclasses.replace(state, jobs=(*state.jobs, job))
    if kind == "job_ended":
        jobs = tuple(dataclasses.replace(j, status=str(event.data["status"])) if j.id == event.data["job"] else j
                     for j in state.jobs)
        return dataclasses.replace(state, jobs=jobs)
    if name is None:
        raise ValueError(f"a {kind} event names no participant")
    participants = dict(state.participants)
    if kind == "removed":
        participants.pop(name, None)
        return dataclasses.replace(state, participants=participants)
    p = participants.get(name) or Participant(name, times={"planned": at})
    if kind == "planned":
        host = str(event.data.get("host", p.host))
        if p.host and host != p.host:  # it runs elsewhere or otherwise now: its kit is delivered there anew
            p = dataclasses.replace(_back(p, "provisioned"), delivered="")
        p = dataclasses.replace(p, host=host)
    elif kind == "provisioned":
        digest = str(event.data["digest"])
        p = dataclasses.replace(p, digest=digest, certificate=str(event.data.get("certificate", "")))
        if digest != p.delivered:  # a new kit: it has to be delivered, started and verified again
            p = _reach(_back(p, "planned"), "provisioned", at)
        elif not p.at_least("provisioned"):
            p = _reach(p, "provisioned", at)
    elif kind == "delivered":
        p = _reach(_back(p, "provisioned"), "delivered", at)
        p = dataclasses.replace(p, delivered=str(event.data.get("digest", p.digest)))
    elif kind in ("started", "healthy", "verified"):
        if kind == "verified" or not p.at_least(kind):
            p = _reach(p, kind, at)
    elif kind == "lost":
        p = dataclasses.replace(_back(p, "delivered"), reason=str(event.data.get("reason", "")))
    elif kind == FAILED:
        p = dataclasses.replace(p, reason=str(event.data.get("reason", "failed")),
                                connection=bool(event.data.get("connection", False)))
    participants[name] = p
    return dataclasses.replace(state, participants=participants)


def fold(events: Iterable[Event], start: PlayState | None = None) -> PlayState:
    """The state after every event, in order."""
    state = start or PlayState()
    for event in events:
        state = step(state, event)
    return state


@dataclass(frozen=True)
class Facts:
    """What this run found before acting: the project file's digest, each participant's kit digest (None before
    provisioning), and the participants whose node answered healthy (None: not asked)."""

    project_digest: str
    participants: tuple[str, ...]
    kit_digests: dict[str, str] | None = None
    healthy: frozenset[str] | None = None


@dataclass(frozen=True)
class Actions:
    """What is left to do, in order: provision, roll out to `deliver` (whose kits or nodes need it), run the
    smoke jobs (`verify`), forget participants no longer in the playbook."""

    provision: bool
    deliver: tuple[str, ...]
    verify: bool
    remove: tuple[str, ...] = ()

    @property
    def nothing(self) -> bool:
        return not (self.provision or self.deliver or self.verify or self.remove)


def next_actions(state: PlayState, facts: Facts) -> Actions:
    """What a run has to do from `state`. A verified participant whose kit did not change and whose node answers is
    left alone; everyone else is rolled out (the rollout itself changes nothing on a host that already runs its
    release) and then verified by the smoke jobs."""
    provision = (facts.project_digest != state.project_digest or not state.prod_dir
                 or any(n not in state.participants or not state.participants[n].at_least("provisioned")
                        for n in facts.participants))
    deliver = []
    for name in facts.participants:
        p = state.participants.get(name)
        digest = (facts.kit_digests or {}).get(name, p.digest if p else "")
        settled = (p is not None and p.at_least("healthy") and p.delivered == digest
                   and (facts.healthy is None or name in facts.healthy))
        if not settled:
            deliver.append(name)
    verify = bool(deliver) or provision or any(
        not state.participants[n].at_least("verified") for n in facts.participants if n in state.participants)
    remove = tuple(n for n in state.participants if n not in facts.participants)
    return Actions(provision, tuple(deliver), verify, remove)


def transitions(events: Iterable[Event]) -> dict[str, list[tuple[str, float]]]:
    """Per participant, each state it reached and when, in order (for the JSON output and the benchmark)."""
    out: dict[str, list[tuple[str, float]]] = {}
    state = PlayState()
    for event in events:
        before = state.participants.get(event.participant or "")
        state = step(state, event)
        after = state.participants.get(event.participant or "")
        if after is not None and (before is None or before.state != after.state):
            out.setdefault(after.name, []).append((after.state, event.at))
    return out
