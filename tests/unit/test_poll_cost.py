"""What a poll cycle costs the store and slurmrestd: proportional to what changed."""
from __future__ import annotations

import json
import threading
import time

import pytest

from app.errors import SlurmJobNotFound
from app.notify.dispatcher import Dispatcher
from app.poller import Poller
from app.slurm.versions import JobInfo, JobsSince
from tests.conftest import FIXTURES, make_job
from tests.helpers import PollSlurm, RecordingNotifier, add_task


class CountingStore:
    """The real store, counting task records read and written."""

    READS = ("active_tasks", "changed_since", "get", "get_by_job_id", "due_deliveries")
    WRITES = ("update_state", "set_fields", "insert")

    def __init__(self, store):
        self.store, self.read, self.written = store, 0, 0

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if name in self.READS:
            def read(*a, **kw):
                out = attr(*a, **kw)
                self.read += len(out) if isinstance(out, list) else int(out is not None)
                return out
            return read
        if name in self.WRITES:
            def write(*a, **kw):
                self.written += 1
                return attr(*a, **kw)
            return write
        return attr

    def reset(self):
        self.read = self.written = 0


class NoChangeSlurm(PollSlurm):
    """GET /jobs?update_time= answering "no change" after the first listing."""

    def get_jobs_since(self, update_time):
        self.requests += 1
        if update_time is not None and not self.changed:
            return JobsSince(None, update_time)
        self.changed = False
        return JobsSince(list(self.jobs.values()), 2)

    changed = True


def next_millisecond():
    """Stamps are in milliseconds (BSON): let a fast test's cycles be in different ones."""
    from app.store import utcnow
    start = utcnow()
    while utcnow() == start:
        pass


def test_a_quiet_cycle_reads_and_writes_no_task_record(store):
    counting = CountingStore(store)
    slurm = NoChangeSlurm()
    for i in range(50):
        add_task(store, 100 + i, state="RUNNING")
        slurm.jobs[100 + i] = make_job(100 + i, "RUNNING")
    poller = Poller(counting, slurm, None)
    poller.skew = 0
    next_millisecond()
    poller.run_once()
    assert counting.read == 50                     # the first cycle loads them, once
    next_millisecond()
    counting.reset()
    counts = poller.run_once()
    assert counts["active"] == 50
    assert (counting.read, counting.written) == (0, 0)
    # One job ends: that one task is written, and read back once, nothing else.
    slurm.jobs[120] = make_job(120, "COMPLETED")
    slurm.changed = True
    counting.reset()
    assert poller.run_once()["changed"] == 1
    assert counting.written == 1
    next_millisecond()
    counting.reset()
    poller.run_once()
    assert counting.read <= 1 and counting.written == 0
    next_millisecond()
    counting.reset()
    poller.run_once()
    assert (counting.read, counting.written) == (0, 0)
    # A new task is found by the changed-since query and looked at in the same cycle.
    uuid = add_task(store, 999, state="PENDING")
    slurm.jobs[999] = make_job(999, "RUNNING")
    slurm.changed = True                          # slurmctld has a new job
    counting.reset()
    assert poller.run_once()["changed"] == 1
    assert store.get(uuid)["slurm_job_state"] == "RUNNING"


class StateSlurm:
    """slurmrestd v0.0.40+ as the poller sees it: /jobs/state batched, /job/{id}."""

    class adapter:
        has_jobs_state = True

    def __init__(self):
        self.jobs: dict[int, JobInfo] = {}
        self.calls: list[tuple] = []

    def get_job_states(self, job_ids):
        self.calls.append(("state", tuple(job_ids)))
        return {i: (self.jobs[i].state, self.jobs[i].state_flags) for i in job_ids
                if i in self.jobs}

    def get_job(self, job_id):
        self.calls.append(("job", job_id))
        if job_id not in self.jobs:
            raise SlurmJobNotFound("gone")
        return self.jobs[job_id]

    def get_jobs_since(self, update_time):
        raise AssertionError("no job listing on v0.0.40+ when /jobs/state serves")


def test_on_v0040_only_our_jobs_are_asked_and_only_changed_ones_read_in_full(store):
    slurm = StateSlurm()
    email = RecordingNotifier()
    for i in range(1200):
        add_task(store, 1 + i, state="RUNNING")
        slurm.jobs[1 + i] = make_job(1 + i, "RUNNING")
    poller = Poller(store, slurm, Dispatcher(store, {"email": email}))
    poller.run_once()
    batches = [c for c in slurm.calls if c[0] == "state"]
    assert [len(c[1]) for c in batches] == [500, 500, 200]
    assert not [c for c in slurm.calls if c[0] == "job"]
    slurm.calls.clear()
    slurm.jobs[7] = make_job(7, "COMPLETED")
    slurm.jobs[8] = make_job(8, "CANCELLED", flags=("COMPLETING",))   # not settled yet
    poller.run_once()
    assert [c for c in slurm.calls if c[0] == "job"] == [("job", 7)]
    assert len(email.sent) == 1
    slurm.jobs[8] = make_job(8, "CANCELLED")
    slurm.calls.clear()
    poller.run_once()
    assert [c for c in slurm.calls if c[0] == "job"] == [("job", 8)]
    assert sum(len(c[1]) for c in slurm.calls if c[0] == "state") == 1199   # 7 is done


def test_two_pollers_one_leads_the_other_takes_over_when_the_lease_runs_out(store):
    from tests.helpers import Clock
    clock = Clock()
    slurm = PollSlurm()
    add_task(store, 1, state="RUNNING")
    slurm.jobs[1] = make_job(1, "RUNNING")
    first = Poller(store, slurm, None, interval=10, clock=clock, holder="a")
    second = Poller(store, slurm, None, interval=10, clock=clock, holder="b")
    assert first.run_once()["leading"] == ["default"]
    assert second.run_once()["standby"] == ["default"] and slurm.requests == 1
    assert second.next_wait() == 2.5
    clock.advance(10)
    assert second.run_once()["standby"] == ["default"]       # renewed 10 s ago: 15 s TTL
    clock.advance(6)                                          # "a" died after its renewal
    assert second.run_once()["leading"] == ["default"]
    assert store.lease("poller:default")["holder"] == "b"
    assert first.run_once()["standby"] == ["default"]
    second.release()
    assert first.run_once()["leading"] == ["default"]


def test_a_hung_peer_delays_neither_tracking_nor_other_peers(store):
    gate, hanging = threading.Event(), threading.Event()

    class Hanging(RecordingNotifier):
        def send(self, event, params, target, delivery_id):
            if "hang.example" in target:
                hanging.set()
                gate.wait(10)
            super().send(event, params, target, delivery_id)

    hook = Hanging("webhook")
    slurm = PollSlurm()
    add_task(store, 1, methods=("webhook",), webhook_url="https://hang.example/x")
    quick = add_task(store, 2, methods=("webhook",), webhook_url="https://ok.example/y")
    slurm.jobs[1] = make_job(1, "COMPLETED")
    dispatcher = Dispatcher(store, {"webhook": hook})
    poller = Poller(store, slurm, dispatcher, interval=0.05)
    stop = threading.Event()
    runner = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        assert hanging.wait(5)                        # the hung send is in flight
        slurm.jobs[2] = make_job(2, "COMPLETED")
        queued = time.monotonic()
        while not hook.sent and time.monotonic() < deadline:
            time.sleep(0.005)
        took = time.monotonic() - queued
        assert store.get(quick)["slurm_job_state"] == "COMPLETED"
        assert [t for _, _, t, _ in hook.sent] == ["https://ok.example/y"]
        # Poll interval 0.05 s, then the dispatcher starts within 0.1 s.
        assert took < 0.05 + 0.2
    finally:
        gate.set()
        stop.set()
        runner.join(5)


def test_a_new_delivery_starts_within_0_2_s_of_being_queued(store):
    from app.tracking import change_state

    email = RecordingNotifier()
    sent_at = []
    original = email.send
    email.send = lambda *a: (sent_at.append(time.monotonic()), original(*a))
    dispatcher = Dispatcher(store, {"email": email})
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        delays = []
        for i in range(5):
            uuid = add_task(store, 50 + i, state="RUNNING")
            record = store.get(uuid)
            queued = time.monotonic()
            assert change_state(store, record, "COMPLETED")          # another process
            deadline = queued + 2
            while len(sent_at) <= i and time.monotonic() < deadline:
                time.sleep(0.002)
            delays.append(sent_at[i] - queued)
        assert max(delays) < 0.2, delays
    finally:
        stop.set()
        thread.join(2)


def test_a_clean_stop_lets_a_send_in_flight_record_that_it_was_sent(store):
    """A stop (SIGTERM from supervisord) during a send waits for it, so the record says
    `sent` and no restarted dispatcher sends the message a second time."""
    gate, sending = threading.Event(), threading.Event()

    class Slow(RecordingNotifier):
        def send(self, event, params, target, delivery_id):
            sending.set()
            gate.wait(5)
            super().send(event, params, target, delivery_id)

    hook = Slow("webhook")
    uuid = add_task(store, 1, methods=("webhook",), webhook_url="https://slow.example/x")
    slurm = PollSlurm()
    slurm.jobs[1] = make_job(1, "COMPLETED")
    poller = Poller(store, slurm, Dispatcher(store, {"webhook": hook}, drain=5), interval=0.05)
    stop = threading.Event()
    runner = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    runner.start()
    assert sending.wait(5)
    stop.set()
    threading.Timer(0.3, gate.set).start()            # the peer answers after the stop
    runner.join(5)
    assert not runner.is_alive()
    assert len(hook.sent) == 1
    assert store.get(uuid)["deliveries"][0]["status"] == "sent"
