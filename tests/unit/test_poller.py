"""The poller and dispatcher through run_once(), with a fake Slurm, recording
notifiers and a clock the test moves (no sleeping)."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from app.states import LOST, SUBMIT_FAILED, SUBMIT_UNKNOWN
from app.notify.dispatcher import Dispatcher
from app.poller import Poller
from tests.conftest import hello_task, make_job
from tests.helpers import Clock, PollSlurm, RecordingNotifier, add_task


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def slurm():
    return PollSlurm()


@pytest.fixture
def email():
    return RecordingNotifier("email")


def make_poller(store, slurm, notifiers, clock, **kw):
    dispatcher = Dispatcher(store, {n.name: n for n in notifiers}, clock=clock,
                            rng=lambda: 1.0, backoff=10, lease=60, max_attempts=4)
    return Poller(store, slurm, dispatcher, interval=10, lost_after=300, clock=clock, **kw)


def test_one_request_per_cycle_whatever_the_number_of_tasks(store, slurm, email, clock):
    for job_id in range(1, 51):
        add_task(store, job_id)
        slurm.jobs[job_id] = make_job(job_id, "RUNNING")
    poller = make_poller(store, slurm, [email], clock)
    counts = poller.run_once()
    assert counts["active"] == 50 and counts["changed"] == 50
    assert slurm.requests == 1
    poller.run_once()
    assert slurm.requests == 2


def test_final_state_is_saved_with_facts_and_reported_once(store, slurm, email, clock):
    uuid = add_task(store, 7)
    start = clock.now - timedelta(seconds=65)
    slurm.jobs[7] = replace(make_job(7, "FAILED", exit_code=3), start_time=start,
                            end_time=clock.now, state_reason="NonZeroExitCode")
    poller = make_poller(store, slurm, [email], clock)
    counts = poller.run_once()
    assert counts["changed"] == 1 and counts["notifications"]["sent"] == 1
    record = store.get(uuid)
    assert record["slurm_job_state"] == "FAILED"
    assert (record["exit_code"], record["elapsed"]) == (3, 65)
    assert [h["state"] for h in record["history"]] == ["PENDING", "FAILED"]
    event, params, target, delivery_id = email.sent[0]
    assert target == "someone@example.org" and params["body"] == "my words"
    assert event["state"] == "FAILED" and event["exit_code"] == 3 and event["elapsed"] == 65
    assert event["slurm_job_id"] == 7 and event["message"] == "my words"
    assert event["stdout"].endswith("slurm-proxy-test.generic.output.txt")
    (delivery,) = record["deliveries"]
    assert delivery["status"] == "sent" and delivery["attempts"] == 1
    assert delivery["id"] == delivery_id and delivery["sent_at"] == clock.now
    for _ in range(3):
        poller.run_once()
    assert len(email.sent) == 1


def test_only_the_states_asked_for_are_reported(store, slurm, email, clock):
    add_task(store, 1)                                   # default: final states only
    add_task(store, 2, on=["RUNNING", "COMPLETED"])
    slurm.jobs[1] = make_job(1, "RUNNING")
    slurm.jobs[2] = make_job(2, "RUNNING")
    poller = make_poller(store, slurm, [email], clock)
    poller.run_once()
    assert [e["slurm_job_id"] for e, *_ in email.sent] == [2]
    slurm.jobs[1] = make_job(1, "COMPLETED")
    slurm.jobs[2] = make_job(2, "COMPLETED")
    poller.run_once()
    assert sorted((e["slurm_job_id"], e["state"]) for e, *_ in email.sent) == [
        (1, "COMPLETED"), (2, "COMPLETED"), (2, "RUNNING")]


def test_completing_and_suspended_are_not_final(store, slurm, email, clock):
    uuid = add_task(store, 1)
    slurm.jobs[1] = make_job(1, "CANCELLED", flags=("COMPLETING",))
    poller = make_poller(store, slurm, [email], clock)
    poller.run_once()
    assert store.get(uuid)["slurm_job_state"] == "PENDING" and email.sent == []
    slurm.jobs[1] = make_job(1, "SUSPENDED")
    poller.run_once()
    assert store.get(uuid)["slurm_job_state"] == "SUSPENDED" and email.sent == []
    assert [t["task"]["uuid"] for t in store.active_tasks()] == [uuid]
    slurm.jobs[1] = make_job(1, "CANCELLED")
    poller.run_once()
    assert store.get(uuid)["slurm_job_state"] == "CANCELLED" and len(email.sent) == 1
    assert store.active_tasks() == []


def test_failed_delivery_is_retried_with_backoff_then_sent_once(store, slurm, clock):
    flaky = RecordingNotifier("email", fail=2)
    uuid = add_task(store, 1)
    slurm.jobs[1] = make_job(1, "COMPLETED")
    poller = make_poller(store, slurm, [flaky], clock)
    assert poller.run_once()["notifications"] == {"sent": 0, "retry": 1, "failed": 0}
    delivery = store.get(uuid)["deliveries"][0]
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert delivery["next_at"] == clock.now + timedelta(seconds=10)
    assert "not reachable" in delivery["last_error"]
    poller.run_once()                       # not due yet: nothing is tried
    assert flaky.calls == 1
    clock.advance(10)
    poller.run_once()                       # second failure: backoff doubles
    assert store.get(uuid)["deliveries"][0]["next_at"] == clock.now + timedelta(seconds=20)
    clock.advance(20)
    poller.run_once()
    delivery = store.get(uuid)["deliveries"][0]
    assert (delivery["status"], delivery["attempts"], delivery["last_error"]) == ("sent", 3, None)
    assert len(flaky.sent) == 1


def test_backoff_has_jitter_and_a_ceiling(store):
    d = Dispatcher(store, {}, backoff=5, backoff_max=60, rng=lambda: 0.0)
    assert [d.delay(n) for n in (1, 2, 3, 10)] == [2.5, 5.0, 10.0, 30.0]
    d.rng = lambda: 1.0
    assert d.delay(10) == 60


def test_permanent_failure_and_too_many_attempts_fail(store, slurm, clock):
    refused = RecordingNotifier("email", permanent=True)
    uuid = add_task(store, 1)
    slurm.jobs[1] = make_job(1, "COMPLETED")
    make_poller(store, slurm, [refused], clock).run_once()
    delivery = store.get(uuid)["deliveries"][0]
    assert (delivery["status"], delivery["attempts"]) == ("failed", 1)
    assert "550" in delivery["last_error"]

    down = RecordingNotifier("email", fail=100)
    uuid2 = add_task(store, 2)
    slurm.jobs[2] = make_job(2, "COMPLETED")
    poller = make_poller(store, slurm, [down], clock)
    for _ in range(6):
        poller.run_once()
        clock.advance(3600)
    delivery = store.get(uuid2)["deliveries"][0]
    assert (delivery["status"], delivery["attempts"]) == ("failed", 4)


def test_unconfigured_method_fails_with_a_reason(store, slurm, email, clock):
    uuid = add_task(store, 1, methods=("email", "webhook"))
    slurm.jobs[1] = make_job(1, "COMPLETED")
    make_poller(store, slurm, [email], clock).run_once()
    by_method = {d["method"]: d for d in store.get(uuid)["deliveries"]}
    assert by_method["email"]["status"] == "sent"
    assert by_method["webhook"]["status"] == "failed"
    assert "not configured" in by_method["webhook"]["last_error"]


def test_a_broken_method_never_stops_other_tasks(store, slurm, clock):
    crashing = RecordingNotifier("webhook", crash=True)
    email = RecordingNotifier("email")
    broken = add_task(store, 1, methods=("webhook",))
    fine = add_task(store, 2, methods=("email",))
    slurm.jobs[1] = make_job(1, "COMPLETED")
    slurm.jobs[2] = make_job(2, "COMPLETED")
    make_poller(store, slurm, [crashing, email], clock).run_once()
    assert len(email.sent) == 1 and email.sent[0][0]["task"]["uuid"] == fine
    assert store.get(broken)["deliveries"][0]["last_error"] == "internal error: RuntimeError"


def test_a_task_that_breaks_tracking_does_not_stop_the_others(store, slurm, email, clock):
    bad = add_task(store, 1)
    good = add_task(store, 2)
    slurm.jobs[1] = make_job(1, "COMPLETED")
    slurm.jobs[2] = make_job(2, "COMPLETED")
    real_update, real_updates = store.update_state, store.update_states

    def update_state(uuid, **kw):
        if uuid == bad:
            raise KeyError("corrupt record")
        return real_update(uuid, **kw)

    def update_states(changes):           # a batch with the corrupt record fails whole
        if any(c["uuid"] == bad for c in changes):
            raise KeyError("corrupt record")
        return real_updates(changes)

    store.update_state, store.update_states = update_state, update_states
    counts = make_poller(store, slurm, [email], clock).run_once()
    assert counts["errors"] == 1 and counts["changed"] == 1
    assert store.get(good)["slurm_job_state"] == "COMPLETED"


def test_two_pollers_at_once_record_and_report_each_change_once(store, slurm, clock):
    email = RecordingNotifier("email")
    uuids = [add_task(store, job_id) for job_id in range(1, 21)]
    for job_id in range(1, 21):
        slurm.jobs[job_id] = make_job(job_id, "COMPLETED")
    pollers = [make_poller(store, slurm, [email], clock) for _ in range(2)]
    barrier = threading.Barrier(2)

    def run(p):
        barrier.wait()
        p.run_once()

    threads = [threading.Thread(target=run, args=(p,)) for p in pollers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in pollers:
        p.run_once()
    assert sorted(e["task"]["uuid"] for e, *_ in email.sent) == sorted(uuids)
    for uuid in uuids:
        record = store.get(uuid)
        assert [h["state"] for h in record["history"]] == ["PENDING", "COMPLETED"]
        assert len(record["deliveries"]) == 1


def test_a_sender_that_died_mid_send_is_replaced_after_its_lease(store, slurm, clock):
    email = RecordingNotifier("email")
    uuid = add_task(store, 1)
    slurm.jobs[1] = make_job(1, "COMPLETED")
    poller = make_poller(store, slurm, [email], clock)
    poller.dispatcher = None
    poller.run_once()                                   # state saved, delivery queued
    (pending,) = [d for u, d in store.due_deliveries(clock.now) if u == uuid]
    assert store.claim_delivery(uuid, pending, lease_until=clock.now + timedelta(seconds=60))
    dispatcher = Dispatcher(store, {"email": email}, clock=clock, lease=60)
    assert dispatcher.run_once()["sent"] == 0           # leased by the dead sender
    clock.advance(61)
    assert dispatcher.run_once()["sent"] == 1
    assert email.sent[0][3] == pending["id"]            # same idempotency key
    assert store.get(uuid)["deliveries"][0]["attempts"] == 2


def test_a_job_slurm_forgot_becomes_lost_after_the_grace_period(store, slurm, email, clock):
    uuid = add_task(store, 99)
    poller = make_poller(store, slurm, [email], clock)
    poller.run_once()
    assert store.get(uuid)["missing_since"] == clock.now
    clock.advance(299)
    poller.run_once()
    assert store.get(uuid)["slurm_job_state"] == "PENDING"
    clock.advance(2)
    assert poller.run_once()["lost"] == 1
    record = store.get(uuid)
    assert record["slurm_job_state"] == LOST and "slurmctld has not known job 99" in record["history"][-1]["note"]
    assert email.sent[0][0]["state"] == LOST
    assert store.active_tasks() == []


def test_a_job_that_reappears_is_no_longer_missing(store, slurm, email, clock):
    uuid = add_task(store, 5)
    poller = make_poller(store, slurm, [email], clock)
    poller.run_once()
    slurm.jobs[5] = make_job(5, "PENDING")
    poller.run_once()
    assert store.get(uuid)["missing_since"] is None


def test_slurmdb_gives_the_final_state_of_a_purged_job(store, slurm, email, clock):
    uuid = add_task(store, 42)
    slurm.db[42] = make_job(42, "TIMEOUT", exit_code=None)
    make_poller(store, slurm, [email], clock, slurmdb=True).run_once()
    assert store.get(uuid)["slurm_job_state"] == "TIMEOUT"
    assert email.sent[0][0]["state"] == "TIMEOUT"


def test_unanswered_submit_is_reconciled_by_the_job_comment(store, slurm, email, clock):
    found = add_task(store, None, state=SUBMIT_UNKNOWN)
    never = add_task(store, None, state=SUBMIT_UNKNOWN)
    job = replace(make_job(321, "RUNNING"), comment=f"slurm-proxy:{found}")
    slurm.jobs[321] = job
    poller = make_poller(store, slurm, [email], clock)
    clock.advance(1)
    poller.run_once()
    record = store.get(found)
    assert (record["slurm_job_state"], record["slurm_job_id"]) == ("RUNNING", 321)
    assert store.get(never)["slurm_job_state"] == SUBMIT_UNKNOWN
    clock.advance(300)
    poller.run_once()
    assert store.get(never)["slurm_job_state"] == SUBMIT_FAILED


def test_slurmrestd_down_does_not_back_off_and_catches_up_next_cycle(store, slurm, email,
                                                                     clock, caplog):
    uuid = add_task(store, 1)
    slurm.jobs[1] = make_job(1, "COMPLETED")
    slurm.down = True
    poller = make_poller(store, slurm, [email], clock)
    counts = poller.run_once()
    assert counts["slurm_ok"] is False and counts["errors"] == 1
    assert poller.next_wait() == 10          # one interval, so it is back within one
    poller.run_once()
    assert poller.next_wait() == 10
    assert "slurmrestd failed (2 in a row)" in caplog.text
    assert store.get(uuid)["slurm_job_state"] == "PENDING"
    slurm.down = False
    poller.run_once()
    assert poller.next_wait() == 10
    assert store.get(uuid)["slurm_job_state"] == "COMPLETED" and len(email.sent) == 1


def test_nothing_active_means_no_request(store, slurm, email, clock):
    make_poller(store, slurm, [email], clock).run_once()
    assert slurm.requests == 0


def test_deliveries_are_visible_in_the_monitor_response(client, store, fake_slurm):
    task = hello_task()
    task["notification"] = {"methods": ["email"], "params": {"email": {"recipient": "a@b.org"}}}
    job_id = client.post("/submit", json={"task": task}).get_json()["slurm_job_id"]
    fake_slurm.jobs[job_id] = make_job(job_id, "COMPLETED")
    body = client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()
    (delivery,) = body["monitor"]["deliveries"]
    assert (delivery["method"], delivery["target"], delivery["state"], delivery["status"]) == (
        "email", "a@b.org", "COMPLETED", "pending")


def test_array_state_is_active_until_every_element_ends():
    from app.poller import array_state
    elements = [replace(make_job(10, "COMPLETED"), array_job_id=10, array_task_id=0),
                replace(make_job(11, "RUNNING"), array_job_id=10, array_task_id=1)]
    assert array_state(10, elements).state == "RUNNING"
    elements[1] = replace(make_job(11, "FAILED", exit_code=4), array_job_id=10, array_task_id=1)
    done = array_state(10, elements)
    assert (done.job_id, done.state, done.exit_code, done.is_terminal) == (10, "FAILED", 4, True)
    cancelled = [replace(make_job(10, "COMPLETED"), array_job_id=10, array_task_id=0),
                 replace(make_job(12, "CANCELLED", exit_code=None), array_job_id=10, array_task_id=2)]
    assert array_state(10, cancelled).state == "CANCELLED"
