"""The state machine of `flctl play` (flctl.cloud.play_state), pure: events in, states out, no I/O."""

from __future__ import annotations

import pytest

from flctl.cloud.play_state import Event, Facts, PlayState, fold, next_actions, step, transitions

SITES = ("server", "site-1", "site-2")


def ev(kind: str, participant: str | None = None, at: float = 1.0, **data: object) -> Event:
    return Event(kind, at, participant, dict(data))


def up_to(state: str, digest: str = "d1", names: tuple[str, ...] = SITES) -> list[Event]:
    """The events of a run that brought every participant to `state`."""
    order = ["planned", "provisioned", "delivered", "started", "healthy", "verified"]
    events = [ev("project", digest="p1", prod_dir="prod_00")]
    for name in names:
        for i, kind in enumerate(order[: order.index(state) + 1]):
            data = {"host": "h"} if kind == "planned" else {"digest": digest} if kind in ("provisioned",
                                                                                      "delivered") else {}
            events.append(ev(kind, name, at=float(i), **data))
    return events


def test_states_move_forward_in_order_with_their_times():
    """Each event moves its participant to its state, recording when; the summary's states in order."""
    # Execute
    state = fold(up_to("verified"))
    # Assert
    p = state.participants["site-1"]
    assert p.state == "verified" and p.delivered == "d1" and p.reason == ""
    assert list(p.times) == ["planned", "provisioned", "delivered", "started", "healthy", "verified"]
    assert p.times["healthy"] == 4.0


def test_a_jump_forward_fills_the_states_in_between():
    """A host found already running its kit goes from provisioned to healthy: delivered and started are reached
    at the same time."""
    # Execute
    state = fold([ev("planned", "s", at=0, host="h"), ev("provisioned", "s", at=1, digest="d"),
                  ev("healthy", "s", at=5)])
    # Assert
    assert state.participants["s"].state == "healthy"
    assert state.participants["s"].times == {"planned": 0, "provisioned": 1, "delivered": 5, "started": 5,
                                              "healthy": 5}


def test_a_new_kit_sends_a_participant_back_to_provisioned_and_keeps_the_others():
    """Provisioning a changed kit for one site (its org edited) undoes its delivery and verification only."""
    # Prepare
    state = fold(up_to("verified"))
    # Execute
    state = fold([ev("provisioned", "site-2", at=9, digest="d2"), ev("provisioned", "site-1", at=9, digest="d1")],
                 state)
    # Assert
    assert state.participants["site-2"].state == "provisioned"
    assert "verified" not in state.participants["site-2"].times
    assert state.participants["site-1"].state == "verified"


def test_a_failure_keeps_the_state_reached_and_says_why():
    """A host that failed stays where it stopped, with the reason; reaching the next state clears it."""
    # Execute
    failed = step(fold(up_to("provisioned")), ev("failed", "site-1", reason="unreachable", connection=True))
    again = step(failed, ev("delivered", "site-1", digest="d1"))
    # Assert
    p = failed.participants["site-1"]
    assert (p.state, p.reason, p.connection) == ("provisioned", "unreachable", True)
    assert (again.participants["site-1"].state, again.participants["site-1"].reason) == ("delivered", "")


def test_a_lost_node_goes_back_to_delivered():
    """A node found not healthy any more is delivered (its kit is on the host) but no longer started."""
    # Execute
    state = step(fold(up_to("verified")), ev("lost", "site-1", reason="not listed online"))
    # Assert
    assert state.participants["site-1"].state == "delivered"
    assert state.participants["site-1"].reason == "not listed online"


def test_jobs_submitted_and_ended():
    """The last job submitted is pending until its end is recorded (a resumed run waits for it)."""
    # Execute
    submitted = step(PlayState(), ev("job_submitted", job="j1", name="hello", participants=["a"]))
    ended = step(submitted, ev("job_ended", job="j1", status="FINISHED"))
    # Assert
    assert submitted.pending_job is not None and submitted.pending_job.id == "j1"
    assert ended.pending_job is None and ended.jobs[0].status == "FINISHED"


def test_an_unknown_event_kind_is_refused():
    with pytest.raises(ValueError, match="unknown play event"):
        Event("exploded", 1.0)


def test_a_fresh_play_provisions_delivers_and_verifies_everything():
    # Execute
    actions = next_actions(PlayState(), Facts("p1", SITES))
    # Assert
    assert actions.provision and actions.deliver == SITES and actions.verify


def test_nothing_changed_and_every_node_healthy_is_nothing_to_do():
    """The no-change run: same project, same kits, every node answering."""
    # Execute
    actions = next_actions(fold(up_to("verified")), Facts("p1", SITES, healthy=frozenset(SITES)))
    # Assert
    assert actions.nothing


def test_a_node_not_answering_is_rolled_out_again_and_verified():
    # Execute
    actions = next_actions(fold(up_to("verified")), Facts("p1", SITES, healthy=frozenset({"server", "site-1"})))
    # Assert
    assert (actions.provision, actions.deliver, actions.verify) == (False, ("site-2",), True)


def test_a_changed_project_is_provisioned_then_only_changed_kits_delivered():
    """The project file changed: provision; after it, only the site whose kit content changed is rolled out."""
    # Prepare
    state = fold(up_to("verified"))
    # Execute
    before = next_actions(state, Facts("p2", SITES))
    after_provisioning = fold([ev("provisioned", "site-2", digest="d2"), ev("provisioned", "site-1", digest="d1"),
                               ev("provisioned", "server", digest="d1"),
                               ev("project", digest="p2", prod_dir="prod_01")], state)
    after = next_actions(after_provisioning, Facts("p2", SITES, {"server": "d1", "site-1": "d1", "site-2": "d2"},
                                                   frozenset(SITES)))
    # Assert
    assert before.provision
    assert (after.provision, after.deliver, after.verify) == (False, ("site-2",), True)


def test_an_interrupted_delivery_resumes_with_what_was_not_healthy():
    """Killed in the middle of delivery: the healthy ones stay, the others are rolled out again."""
    # Prepare: server healthy, site-1 delivered, site-2 only provisioned
    events = [*up_to("provisioned"), ev("delivered", "server", digest="d1"), ev("started", "server"),
              ev("healthy", "server"), ev("delivered", "site-1", digest="d1")]
    # Execute
    actions = next_actions(fold(events), Facts("p1", SITES, {n: "d1" for n in SITES}, frozenset({"server"})))
    # Assert
    assert actions.deliver == ("site-1", "site-2") and not actions.provision and actions.verify


def test_a_participant_dropped_from_the_playbook_is_removed():
    # Execute
    actions = next_actions(fold(up_to("verified")), Facts("p1", ("server", "site-1"), healthy=frozenset(SITES)))
    state = step(fold(up_to("verified")), ev("removed", "site-2"))
    # Assert
    assert actions.remove == ("site-2",) and not actions.deliver
    assert "site-2" not in state.participants


def test_transitions_list_each_state_reached_in_order():
    # Execute
    found = transitions(up_to("healthy", names=("s",)))
    # Assert
    assert [s for s, _ in found["s"]] == ["planned", "provisioned", "delivered", "started", "healthy"]


def test_events_round_trip_through_json():
    event = ev("failed", "s", reason="r", connection=False)
    assert Event.from_json(event.to_json()) == event


def test_a_participant_moved_to_another_host_is_delivered_again():
    """Its inventory entry changed: back to provisioned, its kit to be delivered where it runs now."""
    # Execute
    state = step(fold(up_to("verified")), ev("planned", "site-1", host="elsewhere"))
    actions = next_actions(state, Facts("p1", SITES, {n: "d1" for n in SITES}, frozenset(SITES)))
    # Assert
    assert (state.participants["site-1"].state, state.participants["site-1"].delivered) == ("provisioned", "")
    assert actions.deliver == ("site-1",)


def test_an_interruption_is_recorded_with_its_phase_until_the_next_event():
    """Ctrl-C's event keeps the participants where they were and names the phase; the next run's first event
    clears it."""
    # Prepare
    events = [*up_to("delivered"), ev("interrupted", phase="rolling out 3 of 3 hosts")]
    # Execute
    stopped = fold(events)
    resumed = step(stopped, ev("started", "site-1", at=9.0))
    # Assert
    assert stopped.interrupted == "rolling out 3 of 3 hosts"
    assert {p.state for p in stopped.participants.values()} == {"delivered"}
    assert resumed.interrupted == "" and resumed.participants["site-1"].state == "started"
