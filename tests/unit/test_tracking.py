"""Every state a user can ask to hear about is reported, exactly once, whichever path
observed it: the submit's outcome, a poll, a lookup, a cancel, a registration."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from app.errors import SlurmRejected
from app.notify.dispatcher import Dispatcher
from app.poller import Poller
from tests.conftest import hello_task, make_job
from tests.helpers import Clock, PollSlurm, RecordingNotifier, add_task


def states_sent(email):
    return [event["state"] for event, *_ in email.sent]


def on_task(on):
    task = hello_task()
    task["notification"] = {"methods": ["email"], "on": on, "params": {"email": {
        "recipient": "someone@example.org", "subject": "s", "body": "b"}}}
    return task


def deliver(store, email):
    return Dispatcher(store, {"email": email}).run_once()


def test_pending_running_and_completed_each_fire_once(client, store, fake_slurm):
    email = RecordingNotifier()
    task = on_task(["PENDING", "RUNNING", "COMPLETED"])
    assert client.post("/submit", json={"task": task}).status_code == 200
    deliver(store, email)
    assert states_sent(email) == ["PENDING"]                  # from the submit itself
    job_id = store.get(task["uuid"])["slurm_job_id"]
    fake_slurm.set_state(job_id, "RUNNING")
    for _ in range(3):                                        # lookups race the poller
        client.get(f"/monitor/task_uuid/{task['uuid']}")
    deliver(store, email)
    fake_slurm.set_state(job_id, "SUSPENDED")
    client.get(f"/monitor/task_uuid/{task['uuid']}")
    fake_slurm.set_state(job_id, "RUNNING")                   # resumed: no second RUNNING
    client.get(f"/monitor/task_uuid/{task['uuid']}")
    fake_slurm.set_state(job_id, "COMPLETED")
    client.get(f"/monitor/task_uuid/{task['uuid']}")
    client.get(f"/monitor/task_uuid/{task['uuid']}")
    deliver(store, email)
    deliver(store, email)
    assert states_sent(email) == ["PENDING", "RUNNING", "COMPLETED"]
    assert store.get(task["uuid"])["notified_states"] == ["PENDING", "RUNNING", "COMPLETED"]


def test_a_refused_submit_fires_submit_failed_once(client, store, fake_slurm):
    email = RecordingNotifier()
    fake_slurm.fail_with = SlurmRejected("Slurm refused the job: invalid partition.",
                                         errors={"slurm_errors": []})
    task = on_task(["SUBMIT_FAILED"])
    assert client.post("/submit", json={"task": task}).status_code == 502
    record = store.get(task["uuid"])
    assert record["slurm_job_state"] == "SUBMIT_FAILED"
    assert [d["state"] for d in record["deliveries"]] == ["SUBMIT_FAILED"]
    deliver(store, email)
    deliver(store, email)
    assert states_sent(email) == ["SUBMIT_FAILED"]


def test_a_job_that_ran_between_two_looks_reports_running_before_its_end(store):
    email, slurm, clock = RecordingNotifier(), PollSlurm(), Clock()
    uuid = add_task(store, 7, on=["RUNNING", "FAILED"])
    poller = Poller(store, slurm, Dispatcher(store, {"email": email}, clock=clock), clock=clock)
    slurm.jobs[7] = make_job(7, "PENDING")
    poller.run_once()
    started = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)
    slurm.jobs[7] = replace(make_job(7, "FAILED", exit_code=3), start_time=started,
                            end_time=started)
    poller.run_once()
    poller.run_once()
    assert states_sent(email) == ["RUNNING", "FAILED"]
    assert store.get(uuid)["notified_states"] == ["RUNNING", "FAILED"]


def test_a_job_that_never_started_does_not_report_running(store):
    email, slurm = RecordingNotifier(), PollSlurm()
    add_task(store, 8, on=["RUNNING", "CANCELLED"])
    slurm.jobs[8] = make_job(8, "CANCELLED")                  # cancelled while pending
    Poller(store, slurm, Dispatcher(store, {"email": email})).run_once()
    assert states_sent(email) == ["CANCELLED"]


def test_registering_a_running_job_reports_running_once(client, store, fake_slurm):
    email = RecordingNotifier()
    fake_slurm.jobs[4242] = make_job(4242, "RUNNING")
    task = {"uuid": "0f0e0d0c-0b0a-4000-8000-000000000002", "username": "someone",
            "notification": on_task(["RUNNING", "COMPLETED"])["notification"]}
    resp = client.post("/monitor", json={"monitor": {"task": task, "slurm_job_id": 4242,
                                                     "slurm_job_state": "RUNNING"}})
    assert resp.status_code == 200, resp.get_json()
    client.get(f"/monitor/task_uuid/{task['uuid']}")
    deliver(store, email)
    assert states_sent(email) == ["RUNNING"]


# PENDING is the submit's own outcome: test_pending_running_and_completed_each_fire_once.
@pytest.mark.parametrize("state", ["RUNNING", "SUSPENDED", "COMPLETED", "FAILED",
                                   "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                                   "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY"])
def test_each_slurm_state_fires_exactly_once_when_asked(store, state):
    email, slurm = RecordingNotifier(), PollSlurm()
    add_task(store, 9, on=[state])
    slurm.jobs[9] = make_job(9, state)
    poller = Poller(store, slurm, Dispatcher(store, {"email": email}))
    for _ in range(3):
        poller.run_once()
    assert states_sent(email) == [state]


def test_lost_fires_once(store):
    email, slurm, clock = RecordingNotifier(), PollSlurm(), Clock()
    add_task(store, 11, state="RUNNING", on=["LOST"])
    poller = Poller(store, slurm, Dispatcher(store, {"email": email}, clock=clock),
                    lost_after=60, clock=clock)
    poller.run_once()
    clock.advance(61)
    poller.run_once()
    poller.run_once()
    assert states_sent(email) == ["LOST"]


def test_a_batch_of_changes_counts_each_change_once(store):
    """``record_job_states`` adds its changes to the state-change counter once per
    state: one count per task recorded, none for a task with nothing new."""
    from app import metrics
    from app.tracking import record_job_states

    def counted(state):
        return metrics.STATE_CHANGES.labels(state)._value.get()

    before = {s: counted(s) for s in ("COMPLETED", "FAILED", "RUNNING")}
    ids = {21: "COMPLETED", 22: "COMPLETED", 23: "FAILED", 24: "PENDING"}
    uuids = {job_id: add_task(store, job_id) for job_id in ids}
    pairs = [(store.get(uuids[job_id]), make_job(job_id, state)) for job_id, state in ids.items()]
    changed = record_job_states(store, pairs)
    assert changed == {uuids[21]: True, uuids[22]: True, uuids[23]: True, uuids[24]: False}
    assert {s: counted(s) - before[s] for s in before} == {"COMPLETED": 2, "FAILED": 1,
                                                           "RUNNING": 0}
