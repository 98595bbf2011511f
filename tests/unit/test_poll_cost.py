"""What a poll cycle costs the store and slurmrestd: proportional to what changed."""
from __future__ import annotations

import threading
import time


from app.errors import SlurmJobNotFound, SlurmUnavailable
from app.notify.dispatcher import Dispatcher
from app.poller import Poller
from app.slurm.versions import DiagInfo, JobInfo, JobsSince
from tests.conftest import make_job
from tests.helpers import PollSlurm, RecordingNotifier, add_task


class CountingStore:
    """The real store, counting task records read and written."""

    READS = ("active_tasks", "changed_since", "get", "get_by_job_id", "due_deliveries")
    WRITES = ("update_state", "set_fields", "insert")

    def __init__(self, store):
        self.store, self.read, self.written = store, 0, 0
        self.reads: dict[str, int] = {}              # records read, by method

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if name in self.READS:
            def read(*a, **kw):
                out = attr(*a, **kw)
                n = len(out) if isinstance(out, list) else int(out is not None)
                self.read += n
                self.reads[name] = self.reads.get(name, 0) + n
                return out
            return read
        if name in self.WRITES:
            def write(*a, **kw):
                self.written += 1
                return attr(*a, **kw)
            return write
        if name == "update_states":             # several task records in one write
            def write_many(changes):
                self.written += len(changes)
                return attr(changes)
            return write_many
        return attr

    def reset(self):
        self.read = self.written = 0
        self.reads = {}


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


def test_a_cycle_reads_its_own_writes_back_small_and_changes_made_elsewhere_in_full(store):
    """The next cycle's changed-since query brings back the poller's own writes as
    heads (uuid, job id, state), not whole records; only a task that is new, or that
    changed elsewhere (a lookup, a cancel), is read in full, and a final one not at all."""
    counting = CountingStore(store)
    slurm = NoChangeSlurm()
    uuids = {}
    for i in range(1, 21):
        uuids[i] = add_task(store, i, state="RUNNING" if i <= 10 else "PENDING")
        slurm.jobs[i] = make_job(i, "RUNNING" if i <= 10 else "PENDING")
    poller = Poller(counting, slurm, None)
    poller.skew = 0
    next_millisecond()
    poller.run_once()
    assert counting.reads == {"active_tasks": 20}
    for i in range(1, 6):                                  # five end, seen by the poller
        slurm.jobs[i] = make_job(i, "COMPLETED")
    slurm.changed = True
    next_millisecond()
    assert poller.run_once()["changed"] == 5
    counting.reset()
    next_millisecond()
    poller.run_once()
    assert counting.reads.get("changed_since") == 5
    assert counting.reads.get("active_tasks", 0) == 0 and counting.written == 0
    # Elsewhere: a lookup saw job 11 start, a cancel ended task 12, a new task came.
    assert store.update_state(uuids[11], state="RUNNING", expected="PENDING")
    slurm.jobs[11] = make_job(11, "RUNNING")
    assert store.update_state(uuids[12], state="CANCELLED", expected="PENDING")
    new = add_task(store, 99, state="PENDING")
    slurm.jobs[99] = make_job(99, "PENDING")
    slurm.changed = True                                   # slurmctld's jobs changed
    counting.reset()
    next_millisecond()
    counts = poller.run_once()
    assert counting.reads == {"changed_since": 3, "active_tasks": 2}
    assert counts["changed"] == 0 and counting.written == 0
    assert poller.tasks[uuids[11]]["slurm_job_state"] == "RUNNING"
    assert uuids[12] not in poller.tasks and new in poller.tasks
    assert counts["active"] == 15


# What slurmctld counts in /diag, by the request that does it: a start, the end a
# job's batch script reports, a cancel. A time limit (or a node failure) counts nowhere.
COUNTED = {"RUNNING": "jobs_started", "COMPLETED": "jobs_completed",
           "CANCELLED": "jobs_canceled", "FAILED": "jobs_completed"}


class CtldJobs(dict):
    """slurmctld's jobs: any change moves its ``last_job_update`` to its clock's now,
    and a start or an end its counters as slurmctld counts them."""

    def __init__(self, ctld):
        super().__init__()
        self.ctld = ctld

    def __setitem__(self, job_id, job):
        old = self.get(job_id)
        super().__setitem__(job_id, job)
        self.ctld.last_job_update = self.ctld.now
        if old is not None and old.state != job.state and job.state in COUNTED:
            self.ctld.counters[COUNTED[job.state]] += 1


class StateSlurm:
    """slurmrestd v0.0.40+ as the poller sees it: /jobs/state batched, /job/{id}, and
    ``GET /jobs?update_time=T``, which answers "no change" exactly as slurmctld decides
    it (``T - 1 >= last_job_update``) and otherwise lists every job."""

    class adapter:
        has_jobs_state = True

    def __init__(self):
        self.now, self.last_job_update = 1_000_000, 0      # slurmctld's clock, seconds
        self.jobs: dict[int, JobInfo] = CtldJobs(self)
        self.calls: list[tuple] = []
        self.down = False
        self.counters = dict.fromkeys(["jobs_started", "jobs_completed", "jobs_canceled",
                                       "jobs_failed", "jobs_pending", "jobs_running"], 0)
        self.recount()

    def recount(self):
        """slurmctld's pending and running counts, redone every 30 s."""
        states = [j.state for j in self.jobs.values()]
        self.counters.update(jobs_pending=states.count("PENDING"),
                             jobs_running=states.count("RUNNING"))

    def diag(self):
        self._call("diag")
        fields = dict.fromkeys(DiagInfo.__dataclass_fields__)
        return DiagInfo(**{**fields, **self.counters})

    def _call(self, *call):
        if self.down:
            raise SlurmUnavailable("slurmrestd at http://x is not reachable.")
        self.calls.append(call)

    def get_job_states(self, job_ids):
        self._call("state", tuple(job_ids))
        return {i: (self.jobs[i].state, self.jobs[i].state_flags) for i in job_ids
                if i in self.jobs}

    def get_job(self, job_id):
        self._call("job", job_id)
        if job_id not in self.jobs:
            raise SlurmJobNotFound("gone")
        return self.jobs[job_id]

    def slurmctld_time(self, job_id):
        self._call("clock", job_id)
        return self.now if job_id in self.jobs else None

    def get_jobs_since(self, update_time, keep=None):
        self._call("since", update_time)
        if update_time is not None and update_time - 1 >= self.last_job_update:
            return JobsSince(None, update_time)
        jobs = [j for j in self.jobs.values()
                if keep is None or keep(j.job_id, j.state, j.state_flags)]
        return JobsSince(jobs, self.now, listed=len(self.jobs))

    def kinds(self):
        return [c[0] for c in self.calls]


def probing(poller):
    """A poller that probes however few tasks it watches (PROBE_MIN_TASKS is 100)."""
    poller.look.probe_min_tasks = 1
    return poller


def test_on_v0040_only_our_jobs_are_asked_and_only_changed_ones_read_in_full(store):
    slurm = StateSlurm()
    email = RecordingNotifier()
    for i in range(1200):
        add_task(store, 1 + i, state="RUNNING")
        slurm.jobs[1 + i] = make_job(1 + i, "RUNNING")
    slurm.now += 5
    poller = Poller(store, slurm, Dispatcher(store, {"email": email}))
    poller.run_once()
    # slurmctld's clock, then our jobs' states in batches; nothing read in full.
    assert slurm.calls[0] == ("clock", 1)
    batches = [c for c in slurm.calls if c[0] == "state"]
    assert [len(c[1]) for c in batches] == [500, 500, 200]
    assert "job" not in slurm.kinds()
    # Quiet cycles: one "any change since?" each, answered "no"; nothing else.
    for _ in range(3):
        slurm.calls.clear()
        slurm.now += 10
        assert poller.run_once()["changed"] == 0
        assert slurm.calls == [("since", 1_000_005)]
    # Two jobs end: the answer is slurmctld's job list, which is their detail too.
    slurm.jobs[7] = make_job(7, "COMPLETED")
    slurm.jobs[8] = make_job(8, "CANCELLED", flags=("COMPLETING",))   # not settled yet
    slurm.calls.clear()
    assert poller.run_once()["changed"] == 1
    assert slurm.kinds() == ["since"] and len(email.sent) == 1
    # After a busy answer the next cycle looks at our jobs (/jobs/state) and takes
    # slurmctld's time again first; the one still completing is looked at in any case.
    slurm.jobs[8] = make_job(8, "CANCELLED")
    slurm.calls.clear()
    slurm.now += 10
    assert poller.run_once()["changed"] == 1
    assert slurm.kinds() == ["clock", "state", "state", "state", "job"]
    assert sum(len(c[1]) for c in slurm.calls if c[0] == "state") == 1199   # 7 is done
    assert len(email.sent) == 2
    slurm.calls.clear()
    slurm.now += 10
    assert poller.run_once()["changed"] == 0
    assert slurm.calls == [("since", 1_000_045)]


def test_v0040_a_change_in_the_same_second_as_the_look_is_not_missed(store):
    """slurmctld's times are whole seconds: a job that changes in the very second the
    poller looked (after its look) is still reported by the next probe."""
    slurm = StateSlurm()
    uuid = add_task(store, 1, state="RUNNING")
    slurm.jobs[1] = make_job(1, "RUNNING")
    poller = probing(Poller(store, slurm, None))
    poller.run_once()                                  # looks at second 1_000_000
    slurm.jobs[1] = make_job(1, "COMPLETED")           # ... and it ends in that second
    assert poller.run_once()["changed"] == 1
    assert store.get(uuid)["slurm_job_state"] == "COMPLETED"


def test_v0040_new_and_missing_tasks_are_asked_about_on_a_quiet_cycle(store):
    slurm = StateSlurm()
    add_task(store, 1, state="RUNNING")
    slurm.jobs[1] = make_job(1, "RUNNING")
    # A job submitted before the poller's look, whose task a web worker stores after
    # it: no later change on slurmctld will announce it.
    slurm.jobs[2] = make_job(2, "RUNNING")
    slurm.now += 1
    poller = probing(Poller(store, slurm, None))
    poller.skew = 0
    poller.run_once()
    slurm.now += 10
    slurm.calls.clear()
    poller.run_once()
    assert slurm.kinds() == ["since"]
    next_millisecond()
    late = add_task(store, 2, state="PENDING")
    slurm.calls.clear()
    assert poller.run_once()["changed"] == 1
    assert slurm.kinds() == ["since", "state", "job"]
    assert [c[1] for c in slurm.calls if c[0] == "state"] == [(2,)]
    assert store.get(late)["slurm_job_state"] == "RUNNING"


def test_v0040_a_job_listed_again_in_the_same_state_is_no_longer_missing(store):
    """/jobs/state once left a job out (slurmctld restarting, say), then lists it again,
    unchanged: its task is no longer missing, so it never becomes LOST for it."""
    slurm = StateSlurm()
    uuids = [add_task(store, i, state="RUNNING") for i in (1, 2)]
    for i in (1, 2):
        slurm.jobs[i] = make_job(i, "RUNNING")
    poller = Poller(store, slurm, None, lost_after=600)
    poller.run_once()
    gone = slurm.jobs.pop(1)
    poller.run_once()
    assert store.get(uuids[0])["missing_since"] is not None
    slurm.jobs[1] = gone
    slurm.calls.clear()
    assert poller.run_once()["changed"] == 0
    assert slurm.kinds() == ["state", "job"]        # read in full, then no news
    assert store.get(uuids[0])["missing_since"] is None
    assert store.get(uuids[1]).get("missing_since") is None
    assert uuids[0] not in poller.watched["default"].missing


def test_v0040_a_failed_cycle_or_a_long_quiet_stretch_means_a_full_look(store):
    from app.look import PROBE_FULL_EVERY
    slurm = StateSlurm()
    add_task(store, 1, state="RUNNING")
    slurm.jobs[1] = make_job(1, "RUNNING")
    slurm.now += 1
    poller = probing(Poller(store, slurm, None))
    poller.run_once()
    slurm.down = True
    assert poller.run_once()["errors"] == 1
    slurm.down = False
    slurm.calls.clear()
    poller.run_once()
    assert slurm.kinds() == ["clock", "state"]         # not a probe from before the failure
    slurm.calls.clear()
    for _ in range(PROBE_FULL_EVERY + 1):
        poller.run_once()
    assert slurm.kinds().count("since") == PROBE_FULL_EVERY
    assert slurm.kinds().count("state") == 1


def test_v0040_on_a_busy_cluster_whole_job_lists_become_rare(store):
    """Each "something changed" costs slurmctld's whole job list; when that keeps
    happening, the poller probes less and less often (1, 2, 4, ... 32 cycles apart)
    and looks at just our jobs (/jobs/state) in between."""
    from app.look import PROBE_MAX_SKIP
    slurm = StateSlurm()
    add_task(store, 1, state="RUNNING")
    slurm.jobs[1] = make_job(1, "RUNNING")
    poller = probing(Poller(store, slurm, None))
    poller.run_once()
    lists = 0
    for cycle in range(200):
        slurm.now += 10
        slurm.jobs[10_000 + cycle] = make_job(10_000 + cycle, "RUNNING", user="other")
        slurm.calls.clear()
        poller.run_once()
        lists += slurm.kinds().count("since")
    assert lists <= 200 // PROBE_MAX_SKIP + 6, lists
    # ... and our own job's end is still seen in the next cycle, probe or not.
    for cycle in range(40):
        slurm.now += 10
        slurm.jobs[20_000 + cycle] = make_job(20_000 + cycle, "RUNNING", user="other")
        if cycle == 17:
            slurm.jobs[1] = make_job(1, "COMPLETED")
        counts = poller.run_once()
        if cycle == 17:
            assert counts["changed"] == 1


def too_many(store, n=5):
    """A poller watching n jobs, as if slurmctld knew more than PROBE_MAX_JOBS."""
    slurm = StateSlurm()
    for i in range(n):
        add_task(store, 1 + i, state="RUNNING")
        slurm.jobs[1 + i] = make_job(1 + i, "RUNNING")
    slurm.recount()
    poller = probing(Poller(store, slurm, None))
    poller.look.probe_max_jobs = n - 1                     # as if 5 jobs were 10,001
    return slurm, poller


def test_v0040_too_many_jobs_for_a_probe_quiet_cycles_ask_slurmctlds_counters(store):
    """A "yes" to the update_time probe would be a list of every job slurmctld knows:
    instead a quiet cycle is one GET /diag, whose job counters have not moved."""
    slurm, poller = too_many(store)
    poller.run_once()
    assert slurm.kinds() == ["diag", "state"]         # the counters before the look
    for _ in range(3):
        slurm.calls.clear()
        slurm.now += 10
        assert poller.run_once()["changed"] == 0
        assert slurm.kinds() == ["diag"]


def test_v0040_too_many_jobs_a_counted_end_brings_a_full_look(store):
    slurm, poller = too_many(store)
    poller.run_once()
    slurm.jobs[3] = make_job(3, "COMPLETED")          # its batch script's end: counted
    slurm.calls.clear()
    assert poller.run_once()["changed"] == 1
    assert slurm.kinds() == ["diag", "state", "job"]
    assert store.get_by_job_id(3)["slurm_job_state"] == "COMPLETED"
    slurm.calls.clear()
    assert poller.run_once()["changed"] == 0 and slurm.kinds() == ["diag"]


def test_v0040_too_many_jobs_an_uncounted_end_is_heard_at_the_recount(store):
    """A time limit moves no counter at once; slurmctld's running count, redone every
    30 s, does."""
    slurm, poller = too_many(store)
    poller.run_once()
    slurm.jobs[2] = make_job(2, "TIMEOUT")
    assert poller.run_once()["changed"] == 0          # not heard yet
    slurm.recount()
    assert poller.run_once()["changed"] == 1
    assert store.get_by_job_id(2)["slurm_job_state"] == "TIMEOUT"


def test_v0040_too_many_jobs_every_job_is_looked_at_every_30_cycles(store):
    slurm, poller = too_many(store)
    poller.run_once()
    kinds = []
    for _ in range(31):
        slurm.calls.clear()
        poller.run_once()
        kinds.append(slurm.kinds())
    assert kinds[:30] == [["diag"]] * 30
    assert kinds[30] == ["diag", "state"]


def test_v0040_too_many_jobs_and_no_counters_every_cycle_looks_at_every_job(store):
    slurm, poller = too_many(store)

    def refuse():
        slurm._call("diag")
        raise SlurmUnavailable("slurmrestd at http://x answered 403 to /diag.")
    slurm.diag = refuse
    for _ in range(3):
        slurm.calls.clear()
        poller.run_once()
        assert slurm.kinds() == ["diag", "state"]
    slurm.jobs[4] = make_job(4, "COMPLETED")
    assert poller.run_once()["changed"] == 1


def test_v0040_few_watched_jobs_are_just_asked_about(store):
    """Below PROBE_MIN_TASKS, /jobs/state for our jobs costs no more than a probe, and
    never a whole job list on a busy cluster."""
    slurm = StateSlurm()
    add_task(store, 1, state="RUNNING")
    slurm.jobs[1] = make_job(1, "RUNNING")
    poller = Poller(store, slurm, None)
    for _ in range(3):
        slurm.calls.clear()
        slurm.now += 10
        poller.run_once()
        assert slurm.calls == [("state", (1,))]


def test_v0040_many_changed_jobs_are_read_from_one_list_few_one_by_one(store):
    """A look by /jobs/state reads the jobs with news one GET /job/{id} each, unless
    so many changed that slurmctld's whole list, of a size known from the last one,
    is the cheaper read (a GET costs about as much as LIST_OVER_GETS listed jobs);
    either way each is recorded."""
    slurm = StateSlurm()
    uuids = {}
    for i in range(1, 121):
        uuids[i] = add_task(store, i, state="RUNNING")
        slurm.jobs[i] = make_job(i, "RUNNING")
    poller = probing(Poller(store, slurm, None))
    poller.run_once()                                    # a full look
    slurm.now += 10
    slurm.jobs[999] = make_job(999, "RUNNING", user="other")   # someone else's job
    slurm.calls.clear()
    poller.run_once()                  # the probe's "yes" is a list: 121 jobs known
    assert slurm.kinds() == ["since"]
    for i in range(1, 61):                               # half of ours end
        slurm.jobs[i] = make_job(i, "COMPLETED")
    slurm.now += 10
    slurm.calls.clear()
    assert poller.run_once()["changed"] == 60            # a full look (busy: no probe)
    assert "state" in slurm.kinds() and slurm.kinds().count("since") == 1
    assert "job" not in slurm.kinds()                    # the list, once, not 60 GETs
    assert all(store.get(uuids[i])["slurm_job_state"] == "COMPLETED" for i in range(1, 61))
    slurm.down = True                                    # a failed cycle ...
    assert poller.run_once()["errors"] == 1
    slurm.down = False
    for i in range(61, 66):                              # ... then a few more end
        slurm.jobs[i] = make_job(i, "FAILED")
    slurm.now += 10
    slurm.calls.clear()
    assert poller.run_once()["changed"] == 5             # a full look after a failure
    assert slurm.kinds().count("job") == 5 and "since" not in slurm.kinds()
    assert all(store.get(uuids[i])["slurm_job_state"] == "FAILED" for i in range(61, 66))
    assert store.get(uuids[66])["slurm_job_state"] == "RUNNING"


def test_v0040_a_job_list_of_unknown_size_is_never_read_for_detail(store):
    """After a restart nothing says how many jobs slurmctld knows: many jobs with
    news are still read one by one, never a list that might hold millions."""
    slurm = StateSlurm()
    for i in range(1, 121):
        add_task(store, i, state="RUNNING")
        slurm.jobs[i] = make_job(i, "COMPLETED" if i <= 60 else "RUNNING")
    poller = probing(Poller(store, slurm, None))
    assert poller.run_once()["changed"] == 60
    assert slurm.kinds().count("job") == 60 and "since" not in slurm.kinds()


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


def test_v0040_a_purged_job_does_not_stop_the_probes(store):
    """slurmctld's time is read from a job it still has, not from one it purged."""
    slurm = StateSlurm()
    add_task(store, 1, state="RUNNING")                # purged: slurmctld forgot it
    add_task(store, 2, state="RUNNING")
    slurm.jobs[2] = make_job(2, "RUNNING")
    slurm.now += 1
    poller = probing(Poller(store, slurm, None))
    poller.run_once()
    assert ("clock", 1) in slurm.calls                 # it could not know yet
    slurm.calls.clear()
    slurm.now += 10
    poller.run_once()
    assert slurm.kinds() == ["clock", "state"] and slurm.calls[0] == ("clock", 2)
    slurm.calls.clear()
    slurm.now += 10
    poller.run_once()
    # The probe, then the missing task asked about (it may become LOST in time).
    assert slurm.calls == [("since", 1_000_011), ("state", (1,))]


class ListSlurm:
    """slurmrestd v0.0.38 (Slurm 22.05): GET /jobs?update_time= (every job, or 304 when
    nothing changed since the last list) and GET /job/{id}; no /jobs/state."""

    def __init__(self):
        self.jobs: dict[int, JobInfo] = {}
        self.changed = True
        self.calls: list[str] = []

    def get_jobs_since(self, update_time):
        self.calls.append("list")
        if update_time is not None and not self.changed:
            return JobsSince(None, update_time)
        self.changed = False
        return JobsSince(list(self.jobs.values()), 5, listed=len(self.jobs))

    def get_job(self, job_id):
        self.calls.append("job")
        if job_id not in self.jobs:
            raise SlurmJobNotFound("gone")
        return self.jobs[job_id]


def test_v0038_few_of_ours_on_a_busy_cluster_are_read_one_by_one(store):
    """On 22.05 any change by anyone makes the next list every job slurmctld knows.
    With 3 of ours among 100 jobs changing every cycle, the poller lists less and less
    often and reads our 3 jobs instead; an end is still recorded in the cycle after it
    happens, and a quiet list (304) brings back listing every cycle."""
    slurm = ListSlurm()
    ours = [add_task(store, i, state="RUNNING") for i in (1, 2, 3)]
    for i in (1, 2, 3):
        slurm.jobs[i] = make_job(i, "RUNNING")
    for i in range(100):
        slurm.jobs[1000 + i] = make_job(1000 + i, "RUNNING", user="other")
    poller = Poller(store, slurm, None)
    kinds = []
    for cycle in range(64):
        slurm.jobs[1000 + cycle % 100] = make_job(1000 + cycle % 100, "PENDING", user="other")
        slurm.changed = True                    # someone else's job changed
        if cycle == 40:
            slurm.jobs[2] = make_job(2, "COMPLETED")
        slurm.calls.clear()
        counts = poller.run_once()
        kinds.append("list" if slurm.calls == ["list"] else
                     "ours" if slurm.calls == ["job"] * (3 if cycle <= 40 else 2)
                     else slurm.calls)
        if cycle == 40:
            assert counts["changed"] == 1
            assert store.get(ours[1])["slurm_job_state"] == "COMPLETED"
    assert set(map(str, kinds)) <= {"list", "ours"}, kinds
    assert kinds[:4] == ["list", "ours", "list", "ours"]
    assert kinds.count("list") <= 8, kinds           # 1, 2, 4, 8, 16, 32 cycles apart
    # Quiet: at the next list (the last change), then a 304, and the poller lists
    # again every cycle.
    quiet = []
    while quiet[-2:] != ["list", "list"] and len(quiet) < 70:
        slurm.calls.clear()
        poller.run_once()
        quiet.append("list" if slurm.calls == ["list"] else "ours")
    assert quiet.count("list") == 3, quiet
    for _ in range(3):
        slurm.calls.clear()
        poller.run_once()
        assert slurm.calls == ["list"]


def test_v0038_many_of_ours_are_listed_every_cycle(store):
    slurm = ListSlurm()
    for i in range(1, 61):                            # more than ONE_BY_ONE_MAX
        add_task(store, i, state="RUNNING")
        slurm.jobs[i] = make_job(i, "RUNNING")
    for i in range(2000):
        slurm.jobs[10_000 + i] = make_job(10_000 + i, "RUNNING", user="other")
    poller = Poller(store, slurm, None)
    for _ in range(4):
        slurm.changed = True
        slurm.calls.clear()
        poller.run_once()
        assert slurm.calls == ["list"]
