"""The poller: the safety net that watches every active task, at a cost proportional to
what changed.

``run_once()`` does one cycle and returns counts; ``run(stop)`` loops until ``stop``
is set, with the dispatcher on its own thread; ``main()`` is the program supervisord
runs (``python -m app.poller``), whose SIGTERM/SIGINT handlers set ``stop`` so shutdown
does not wait out a sleep.

A cycle:

1. The store: the poller keeps the active tasks in memory. At start (and when it
   becomes leader) it reads them once (indexed on ``active``); afterwards each cycle
   asks only for tasks inserted or changed since the last cycle (indexed on
   ``updated_at``). A cycle where nothing changed reads and writes no task record.
2. The lease: one poller leads each cluster (``take_lease``, renewed every cycle with a
   TTL of 1.5 intervals); the others stand by and retry every quarter interval, so a
   standby takes over within two intervals of the leader dying.
3. slurmrestd, by the leader only:
   - v0.0.40+: ``GET /jobs/state?job_id=…`` for our own active jobs (batches of
     ``STATE_BATCH``; about 60 bytes a job), then ``GET /job/{id}`` only for jobs whose
     state changed. With ``PROBE_MIN_TASKS`` or more, a cycle first asks ``GET
     /jobs?update_time=T`` (T: slurmctld's own time before the last full look): "no
     change" means only new, missing and still-completing tasks are asked about; a
     change brings slurmctld's whole job list, read as the detail of the changed jobs
     (``_look_modern``). While slurmctld knows more than ``PROBE_MAX_JOBS`` jobs the
     question is ``GET /diag`` instead: have its job counters moved?
   - v0.0.38 (and for job arrays and unanswered submits): ``GET /jobs?update_time=``;
     "no change" (HTTP 304, or on v0.0.40+ 200 with an empty list and a warning) costs
     nothing; a new listing is compared with the last one and only tasks whose job
     changed are looked at. On a busy 22.05 cluster with few of ours among many jobs,
     our jobs are read one by one between lists (``_look_one_by_one``).
   Each new state goes through ``tracking.change_state`` (compare-and-set, history,
   deliveries). A job slurmctld no longer knows (purged after MinJobAge) is looked up
   in slurmdb when SLURM_SLURMDB is on; otherwise, once missing for
   SLURM_POLL_LOST_AFTER seconds, it becomes LOST.
4. After a slurmrestd failure the next cycle is still one interval later (no backoff),
   so tracking resumes within one interval of slurmrestd coming back.

While slurmctld's end-of-job events arrive (``/events/slurm/jobcomp`` beats
``events:<cluster>``), the interval is SLURM_POLL_INTERVAL_WITH_EVENTS.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid as uuid_module
from datetime import datetime, timedelta
from typing import Any, Callable

from . import metrics
from .errors import SlurmJobNotFound, SlurmProxyError, StoreUnavailable
from .states import (FINAL_STATES, LOST, RUNNING, SUBMIT_FAILED, SUBMIT_UNKNOWN, SUBMITTING,
                     TERMINAL_STATES, is_terminal)
from .slurm.versions import JobInfo
from .store import utcnow
from .tracking import change_state, is_owners_job, job_facts, record_job_state, settled_state
from .poll_state import ClusterView, Watched, activity, array_state  # noqa: F401 - array_state: API

logger = logging.getLogger(__name__)

SUBMITTING_GRACE = 60.0       # seconds a SUBMITTING record may be in flight
STATE_BATCH = 500             # job ids per GET /jobs/state, unless the adapter says
# v0.0.40+: a quiet cycle asks slurmctld "any job changed since T?" (one small answer);
# a yes brings slurmctld's whole job list (about 10 kB a job), so:
PROBE_MIN_TASKS = 100         # fewer watched jobs: /jobs/state for them is as cheap
PROBE_MAX_JOBS = 10_000       # no update_time probe when that list would be longer
                              # (Slurm's default MaxJobCount): GET /diag's counters
PROBE_MAX_SKIP = 32           # after a busy answer, cycles without probing (doubling)
PROBE_FULL_EVERY = 30         # look at every watched job at least every this many cycles
# v0.0.38 (no /jobs/state): on a busy cluster where ours are few among many, each cycle
# reads our jobs one by one (GET /job/{id}) instead of slurmctld's whole job list.
ONE_BY_ONE_MAX = 50           # at most this many of our jobs
ONE_BY_ONE_RATIO = 20         # ... and slurmctld knows at least this many times more
CLOCK_SKEW = 2.0              # seconds the store's writers' clocks may disagree
EVENTS_FRESH = 10             # intervals after the last event during which events count


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid_module.uuid4().hex[:6]}"


class Poller:
    def __init__(self, store, slurm, dispatcher=None, *, interval: float = 10.0,
                 lost_after: float = 600.0, slurmdb: bool = False,
                 interval_with_events: float | None = None,
                 clock: Callable[[], datetime] = utcnow, holder: str | None = None):
        from .slurm.clusters import Clusters

        self.store, self.dispatcher = store, dispatcher
        self.slurm = slurm if isinstance(slurm, Clusters) else Clusters({"default": slurm})
        self.interval, self.lost_after, self.slurmdb = interval, lost_after, slurmdb
        self.interval_with_events = interval_with_events or interval
        self.clock = clock
        self.holder = holder or holder_id()
        self.views: dict[str, ClusterView] = {}
        self.last_cycle_at: datetime | None = None
        self.watched: dict[str, Watched] = {}            # active tasks, by cluster
        self.cluster_of: dict[str, str] = {}             # uuid -> cluster
        self.watermark: datetime | None = None           # store changes read up to here
        self.events_fresh: dict[str, bool] = {}
        self.skew = CLOCK_SKEW
        self.probe_min_tasks, self.probe_max_jobs = PROBE_MIN_TASKS, PROBE_MAX_JOBS
        self.one_by_one_max = ONE_BY_ONE_MAX

    @property
    def failures(self) -> int:
        """Consecutive failed cycles of the worst cluster."""
        return max((v.failures for v in self.views.values()), default=0)

    @classmethod
    def from_config(cls, store, slurm, dispatcher, config, **kwargs) -> "Poller":
        return cls(store, slurm, dispatcher, interval=config["SLURM_POLL_INTERVAL"],
                   lost_after=config["SLURM_POLL_LOST_AFTER"], slurmdb=config["SLURM_SLURMDB"],
                   interval_with_events=config["SLURM_POLL_INTERVAL_WITH_EVENTS"], **kwargs)

    # -- one cycle -----------------------------------------------------------------
    def run_once(self, dispatch: bool = True) -> dict[str, Any]:
        """One cycle; with ``dispatch``, then send the due notifications one by one
        (``run`` leaves that to the dispatcher's own thread)."""
        started = time.monotonic()
        counts = self._cycle()
        metrics.POLL_SECONDS.observe(time.monotonic() - started)
        metrics.POLL_CYCLES.labels("ok" if counts["slurm_ok"] and not counts["errors"]
                                   else "error").inc()
        if dispatch and self.dispatcher is not None:
            counts["notifications"] = self.dispatcher.run_once()
        elif (counts["changed"] or counts["lost"]) and self.dispatcher is not None:
            self.dispatcher.wake()
        if counts["leading"]:
            try:
                self.store.beat("poller", self.clock(), {
                    "interval": self.current_interval(), "active": counts["active"],
                    "slurm_ok": counts["slurm_ok"], "holder": self.holder})
            except StoreUnavailable:
                pass
        return counts

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Every active task the poller watches, by uuid."""
        return {u: r for w in self.watched.values() for u, r in w.tasks.items()}

    def _put(self, record: dict[str, Any], dirty: bool) -> None:
        uuid, cluster = record["task"]["uuid"], self.slurm.name_of(record)
        if self.cluster_of.get(uuid, cluster) != cluster:
            self._drop(uuid)
        self.cluster_of[uuid] = cluster
        watched = self.watched.setdefault(cluster, Watched())
        watched.put(record)
        if dirty:
            watched.dirty.add(uuid)

    def _drop(self, uuid: str) -> None:
        cluster = self.cluster_of.pop(uuid, None)
        if cluster is not None:
            self.watched[cluster].drop(uuid)

    def _sync_tasks(self) -> None:
        """Bring the in-memory active tasks up to date with the store: all of them at
        start, then only those inserted or changed since the last cycle."""
        mark = utcnow() - timedelta(seconds=self.skew)
        if self.watermark is None:
            records = self.store.active_tasks()
            self.watched, self.cluster_of = {}, {}
            for record in records:
                self._put(record, dirty=True)
            self.watermark = mark
            return
        for record in self.store.changed_since(self.watermark):
            uuid = record["task"]["uuid"]
            if not record.pop("active", True):
                self._drop(uuid)
                continue
            cluster = self.cluster_of.get(uuid)
            known = self.watched[cluster].tasks.get(uuid) if cluster else None
            if known is not None and known["slurm_job_state"] == record["slurm_job_state"] \
                    and known.get("slurm_job_id") == record.get("slurm_job_id"):
                continue                         # our own write, read back
            self._put(record, dirty=True)
        self.watermark = mark

    def _cycle(self) -> dict[str, Any]:
        counts: dict[str, Any] = {"active": 0, "changed": 0, "lost": 0, "errors": 0,
                                  "slurm_ok": True, "leading": [], "standby": [],
                                  "slurm_requests": 0}
        try:
            self._sync_tasks()
        except StoreUnavailable as exc:
            logger.warning("poll skipped: %s", exc.message)
            counts["errors"] += 1
            return counts
        counts["active"] = sum(len(w.tasks) for w in self.watched.values())
        now = self.clock()
        for name in dict.fromkeys([*self.slurm.names, *self.watched]):
            watched = self.watched.setdefault(name, Watched())
            view = self.views.setdefault(name, ClusterView(name))
            if not self._lead(view, watched, now):
                counts["standby"].append(name)
                continue
            counts["leading"].append(name)
            if not watched.tasks:
                continue
            try:
                todo = self._look(view, watched, counts)
            except SlurmProxyError as exc:
                view.failures += 1
                view.forget_probe()                   # a look cut short: look again in full
                counts["slurm_ok"] = False
                counts["errors"] += 1
                logger.warning("poll: cluster %s: slurmrestd failed (%d in a row): %s",
                               name, view.failures, exc.message)
                continue
            for record, job in todo:
                uuid = record["task"]["uuid"]
                try:
                    outcome = self._track(record, view, watched, job, now)
                except SlurmProxyError as exc:
                    counts["errors"] += 1
                    logger.warning("poll: task_uuid=%s slurm_job_id=%s: %s",
                                   uuid, record.get("slurm_job_id"), exc.message)
                    continue
                except Exception:  # noqa: BLE001 - one task must not stop the others
                    counts["errors"] += 1
                    logger.exception("poll: task_uuid=%s slurm_job_id=%s failed",
                                     uuid, record.get("slurm_job_id"))
                    continue
                if outcome:
                    counts[outcome] += 1
                if record["slurm_job_state"] in FINAL_STATES:
                    self._drop(uuid)
                elif outcome:
                    self._put(record, dirty=False)        # its job id or kind may be new
        self.last_cycle_at = self.clock()
        return counts

    # -- leading -------------------------------------------------------------------
    def _lead(self, view: ClusterView, watched: Watched, now: datetime) -> bool:
        """Take or renew this cluster's lease; a new leader looks at every task once."""
        ttl = 1.5 * self.current_interval()
        try:
            leading = self.store.take_lease(f"poller:{view.name}", self.holder, now, ttl)
        except StoreUnavailable:
            leading = False
        if leading and not view.leading:
            logger.info("poller %s leads cluster %s", self.holder, view.name)
            view.update_time, view.cycles = None, 0
            view.forget_probe()
            watched.dirty |= set(watched.tasks)
        elif view.leading and not leading:
            logger.warning("poller %s lost the lease of cluster %s; standing by",
                           self.holder, view.name)
        view.leading = leading
        return leading

    def release(self) -> None:
        """Give up the leases (a clean stop), so a standby takes over at once."""
        for view in self.views.values():
            if view.leading:
                try:
                    self.store.release_lease(f"poller:{view.name}", self.holder)
                except StoreUnavailable:
                    pass
                view.leading = False

    # -- asking Slurm --------------------------------------------------------------
    def _look(self, view: ClusterView, watched: Watched,
              counts: dict[str, Any]) -> list[tuple[dict[str, Any], JobInfo | None]]:
        """Ask slurmrestd; return the tasks to look at, each with its job (None:
        Slurm did not list it)."""
        client = self.slurm.get(view.name)
        modern = getattr(getattr(client, "adapter", None), "has_jobs_state", False) \
            and hasattr(client, "get_job_states")
        todo: list[tuple[dict[str, Any], JobInfo | None]] = []
        ours = len(watched.tasks) - len(watched.listing)
        if modern and ours:
            todo += self._look_modern(view, client, watched, counts)
        elif ours and view.probe_skip and ours <= self.one_by_one_max \
                and view.known_jobs >= ONE_BY_ONE_RATIO * ours:
            view.probe_skip -= 1
            todo += self._look_one_by_one(client, watched, counts)
            if watched.listing:            # the job list only for what needs it
                todo += self._look_by_listing(view, client, watched, True, counts, False)
            return todo
        if not modern or watched.listing:
            todo += self._look_by_listing(view, client, watched, modern, counts, not modern)
        return todo

    def _look_modern(self, view, client, watched, counts):
        """v0.0.40+. When slurmctld has said "no change" lately, one small question:
        on "no change" only the tasks that need a look anyway (new, missing, still
        completing) are asked about. Otherwise every watched job: from the probe's job
        list, or by ``/jobs/state`` (our jobs only) and ``GET /job/{id}`` for the
        changed ones.

        The question is ``GET /jobs?update_time=T`` (a few hundred bytes), T being
        slurmctld's own time, taken before a full look (``slurmctld_time``) or from the
        job list; slurmctld answers "no change" only when its last job change is older
        than T (``last_update - 1 >= last_job_update``), so a change in the same second
        as T is still reported. Where a "yes" would bring a list of more than
        ``probe_max_jobs`` jobs, it is ``GET /diag`` instead: slurmctld's job counters
        (``poll_state.activity``), taken before the full look, unchanged."""
        fresh = None                     # counters just read, when they moved
        if view.probe_skip:
            view.probe_skip -= 1
        elif view.probe_since is not None and view.probes < PROBE_FULL_EVERY:
            view.probes += 1
            listed: set[int] = set()
            answer = client.get_jobs_since(view.probe_since,
                                           keep=self._keeper(watched, listed))
            counts["slurm_requests"] += 1
            view.failures = 0
            if answer.unchanged:
                view.probe_backoff = 0
                return self._look_at_hot(view, client, watched, counts)
            # Some job changed: the answer is slurmctld's whole list. Use it, and on a
            # busy cluster probe less often (each busy answer costs a whole list).
            view.probe_since, view.known_jobs = answer.update_time, answer.listed
            view.probe_backoff = min(PROBE_MAX_SKIP, max(1, 2 * view.probe_backoff))
            view.probe_skip = view.probe_backoff
            if view.known_jobs > self.probe_max_jobs:
                view.forget_probe()
            return self._look_in_list(watched, answer.jobs, listed)
        elif view.activity is not None and view.probes < PROBE_FULL_EVERY:
            view.probes += 1
            fresh = activity(client.diag())
            counts["slurm_requests"] += 1
            view.failures = 0
            if fresh == view.activity:
                return self._look_at_hot(view, client, watched, counts)
        records = [r for u, r in watched.tasks.items() if u not in watched.listing]
        since = None
        if view.probe_skip == 0 and self.probe_min_tasks <= len(records):
            if max(len(records), view.known_jobs) <= self.probe_max_jobs:
                # slurmctld's time before we look: any later change shows in the next probe.
                known = [r["slurm_job_id"] for r in records
                         if r["task"]["uuid"] not in watched.missing]
                if known:                      # any job slurmctld still has will do
                    since = client.slurmctld_time(min(known))
                    counts["slurm_requests"] += 1
            elif fresh is None:
                fresh = self._activity(client, counts)
        else:
            fresh = None
        todo = self._look_by_state(view, client, watched, records, counts)
        view.probe_since, view.activity, view.probes = since, fresh if since is None else None, 0
        return todo

    @staticmethod
    def _activity(client, counts) -> tuple | None:
        """slurmctld's job counters, or None when this slurmrestd will not say (the
        full look then runs every cycle, as without them)."""
        counts["slurm_requests"] += 1
        try:
            return activity(client.diag())
        except SlurmProxyError as exc:
            logger.info("poll: no job counters from slurmrestd (%s): each cycle looks at "
                        "every watched job", exc.message)
            return None

    def _look_at_hot(self, view, client, watched, counts):
        """After "no change": only the tasks that need a look anyway."""
        hot = (watched.dirty | watched.missing | watched.unsettled) - watched.listing
        records = [watched.tasks[u] for u in hot if u in watched.tasks]
        return self._look_by_state(view, client, watched, records, counts) if records else []

    def _keeper(self, watched, listed: set[int]):
        """For ``parse_jobs``: note which of our jobs slurmctld lists, and keep (read in
        full) only those with news for one of their tasks."""
        def keep(job_id: int, base: str, flags: tuple[str, ...]) -> bool:
            uuids = watched.by_job.get(job_id)
            if not uuids:
                return False
            listed.add(job_id)
            return any([self._is_news(watched, u, watched.tasks[u], base, flags)
                        for u in uuids if u not in watched.listing])
        return keep

    def _look_in_list(self, watched, jobs, listed: set[int]):
        """The tasks whose job changed, from slurmctld's whole job list: ``jobs`` those
        with news, ``listed`` the ids of all of ours it lists."""
        by_id = {j.job_id: j for j in jobs}
        todo = []
        for uuid, record in watched.tasks.items():
            if uuid in watched.listing:
                continue
            watched.dirty.discard(uuid)
            job_id = record["slurm_job_id"]
            if job_id not in listed:
                todo.append((record, None))
            elif job_id in by_id:
                todo.append((record, by_id[job_id]))
        return todo

    @staticmethod
    def _is_news(watched, uuid, record, base, flags) -> bool:
        """Whether a job's (state, flags) is worth reading in full and recording: a
        settled state other than the task's (or the task was missing). An ended job
        still completing is looked at again next cycle."""
        if base in TERMINAL_STATES and not is_terminal(base, flags):
            watched.unsettled.add(uuid)
            return False
        watched.unsettled.discard(uuid)
        return base != record["slurm_job_state"] or uuid in watched.missing

    def _look_by_state(self, view, client, watched, records, counts):
        ids = sorted({r["slurm_job_id"] for r in records})
        states: dict[int, tuple[str, tuple[str, ...]]] = {}
        batch = getattr(client.adapter, "jobs_state_batch", STATE_BATCH)
        for i in range(0, len(ids), batch):
            states.update(client.get_job_states(ids[i:i + batch]))
            counts["slurm_requests"] += 1
        view.failures = 0
        todo = []
        for record in records:
            uuid, job_id = record["task"]["uuid"], record["slurm_job_id"]
            watched.dirty.discard(uuid)
            seen = states.get(job_id)
            if seen is None:
                todo.append((record, None))
                continue
            if not self._is_news(watched, uuid, record, *seen):
                continue
            try:
                job = client.get_job(job_id)
            except SlurmJobNotFound:
                job = None
            counts["slurm_requests"] += 1
            if job is not None and job.state in TERMINAL_STATES and not job.is_terminal:
                watched.unsettled.add(uuid)   # /jobs/state was ahead of the job's detail
            todo.append((record, job))
        return todo

    def _look_one_by_one(self, client, watched, counts):
        """v0.0.38 on a busy cluster: each of our few jobs with ``GET /job/{id}``
        (a few kB each) rather than every job slurmctld knows."""
        todo = []
        for uuid, record in watched.tasks.items():
            if uuid in watched.listing:
                continue
            watched.dirty.discard(uuid)
            try:
                job = client.get_job(record["slurm_job_id"])
            except SlurmJobNotFound:
                job = None
            counts["slurm_requests"] += 1
            todo.append((record, job))
        return todo

    def _look_by_listing(self, view, client, watched, modern, counts, pace=False):
        """The job list (``update_time``); with ``pace`` (v0.0.38), whether it said
        "no change" decides if the next cycles may read our jobs one by one."""
        changed = view.refresh(client)
        counts["slurm_requests"] += 1
        if not pace:
            pass
        elif changed is None:                      # quiet: list again next cycle
            view.probe_backoff = view.probe_skip = 0
        else:                # busy: on v0.0.38, maybe our few jobs one by one for a while
            view.known_jobs = len(view.jobs)
            view.probe_backoff = min(PROBE_MAX_SKIP, max(1, 2 * view.probe_backoff))
            view.probe_skip = view.probe_backoff
        changed = changed or set()
        candidates = watched.dirty | watched.missing | watched.submits
        for job_id in changed:
            candidates |= watched.by_job.get(job_id, set())
        if modern:
            candidates &= watched.listing
        todo = []
        for uuid in candidates:
            record = watched.tasks.get(uuid)
            if record is None:
                continue
            watched.dirty.discard(uuid)
            job_id = record.get("slurm_job_id")
            job = view.jobs.get(job_id) if job_id is not None else None
            if record["task"].get("slurm", {}).get("array") and job_id is not None:
                elements = view.arrays.get(job_id) or ([job] if job else [])
                job = array_state(job_id, elements) if elements else None
            todo.append((record, job))
        return todo

    # -- one task ------------------------------------------------------------------
    def _track(self, record: dict[str, Any], view: ClusterView, watched: Watched,
               job: JobInfo | None, now: datetime) -> str | None:
        state = record["slurm_job_state"]
        uuid = record["task"]["uuid"]
        if state in (SUBMITTING, SUBMIT_UNKNOWN):
            return self._reconcile(record, view, now)
        if job is not None and not is_owners_job(record, job):
            # Another user's job under this id: never recorded or reported to this task.
            job = None
        if job is not None:
            watched.missing.discard(uuid)
            if record_job_state(self.store, record, job, now):
                return "changed"
            if record.get("missing_since"):
                self.store.set_fields(uuid, {"missing_since": None})
                record["missing_since"] = None
            return None
        watched.missing.add(uuid)
        return self._missing(record, view, now)

    def _reconcile(self, record: dict[str, Any], view: ClusterView, now: datetime) -> str | None:
        """A submit whose answer we never saw: find the job by its comment."""
        uuid = record["task"]["uuid"]
        age = (now - record["created_at"]).total_seconds()
        if record["slurm_job_state"] == SUBMITTING and age < SUBMITTING_GRACE:
            return None                              # a submit still in flight
        job = view.by_comment.get(f"slurm-proxy:{uuid}")
        if job is not None and not is_owners_job(record, job):
            job = None                  # anyone may write any comment on their own job
        if job is not None:
            state = settled_state(job) or RUNNING          # still completing
            changed = change_state(self.store, record, state,
                                   fields={"slurm_job_id": job.job_id, **job_facts(job)},
                                   note="job found by its comment after an unanswered submit",
                                   now=now)
            return "changed" if changed else None
        if age >= self.lost_after:
            changed = change_state(self.store, record, SUBMIT_FAILED, note=(
                "the submit was never answered and no job with this task's comment turned up"),
                fields={"error": {"code": "submit_unknown",
                                  "message": "No Slurm job turned up for this task."}}, now=now)
            return "changed" if changed else None
        return None

    def _missing(self, record: dict[str, Any], view: ClusterView, now: datetime) -> str | None:
        uuid, job_id = record["task"]["uuid"], record.get("slurm_job_id")
        if job_id is None:
            return None
        if self.slurmdb:
            try:
                job = self.slurm.get(view.name).get_db_job(job_id)
            except SlurmJobNotFound:
                job = None
            if job is not None and job.is_terminal and is_owners_job(record, job):
                return "changed" if record_job_state(self.store, record, job, now) else None
        since = record.get("missing_since")
        if since is None:
            if self.store.set_fields(uuid, {"missing_since": now},
                                     expected=record["slurm_job_state"]):
                record["missing_since"] = now
            return None
        if (now - since).total_seconds() < self.lost_after:
            return None
        note = (f"slurmctld has not known job {job_id} for {int(self.lost_after)} s and "
                f"{'slurmdb has no final state for it' if self.slurmdb else 'no accounting is configured'}")
        changed = change_state(self.store, record, LOST, note=note,
                               fields={"state_reason": "JobLost"}, now=now)
        return "lost" if changed else None

    # -- the loop ------------------------------------------------------------------
    def current_interval(self) -> float:
        """SLURM_POLL_INTERVAL, or the longer one while every cluster sends events."""
        if self.interval_with_events > self.interval and self.events_fresh \
                and all(self.events_fresh.get(n) for n in self.slurm.names):
            return self.interval_with_events
        return self.interval

    def check_events(self) -> None:
        """Whether each cluster's slurmctld has sent a timely event lately (one small read)."""
        horizon = EVENTS_FRESH * self.interval_with_events
        for name in self.slurm.names:
            try:
                beat = self.store.last_beat(f"events:{name}")
            except StoreUnavailable:
                continue
            # Events count while they come, and come in time: an event about a job
            # that ended longer ago than one interval (slurmctld sending its backlog
            # after an outage, or a clock or time zone apart) keeps the short one.
            lag = (beat or {}).get("lag")
            self.events_fresh[name] = bool(beat) and \
                (utcnow() - beat["at"]).total_seconds() < horizon and \
                (lag is None or -self.interval <= lag <= self.interval)

    def next_wait(self) -> float:
        """One interval, also after a failure, so tracking resumes within one
        interval of slurmrestd coming back; a standby retries the lease every quarter."""
        interval = self.current_interval()
        if self.views and not any(v.leading for v in self.views.values()):
            return interval / 4
        return interval

    def run(self, stop: threading.Event) -> None:
        """Poll every interval, with the dispatcher on its own thread."""
        logger.info("poller %s started: interval %.1f s (%.1f s while events arrive)",
                    self.holder, self.interval, self.interval_with_events)
        dispatching = None
        if self.dispatcher is not None:
            dispatching = threading.Thread(target=self.dispatcher.run, args=(stop,),
                                           name="dispatcher", daemon=True)
            dispatching.start()
        next_poll = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            if started >= next_poll:
                try:
                    self.check_events()
                    counts = self.run_once(dispatch=False)
                    if counts["changed"] or counts["lost"] or counts["errors"]:
                        logger.info("poll: %s", {k: v for k, v in counts.items()
                                                 if k not in ("leading", "standby")})
                except Exception:  # noqa: BLE001 - the only catch-all: keep watching
                    logger.exception("poll cycle failed")
                # Fixed rate: the next poll is an interval after this one began.
                next_poll = max(started + self.next_wait(), time.monotonic())
            stop.wait(max(0.0, next_poll - time.monotonic()))
        self.release()
        if dispatching is not None:     # let sends in flight record their outcome
            dispatching.join(self.dispatcher.drain + 1.0)
        logger.info("poller stopped")


def build_poller(config, store=None, slurm=None, notifiers=None) -> Poller:
    from . import services as wiring
    from .notify.dispatcher import Dispatcher

    parts = wiring.build(config, wiring.POLLER, store=store, slurm=slurm, notifiers=notifiers)
    return Poller.from_config(parts.store, parts.slurm,
                              Dispatcher.from_config(parts.store, parts.notifiers, config), config)


def start_in_thread(app) -> threading.Event:
    """Development only (run.py, or gunicorn with the embedded store): a poller thread
    sharing the web app's store. Returns the event that stops it."""
    services = app.extensions["slurm_proxy"]
    poller = build_poller(services.config, store=services.store, slurm=services.slurm)
    stop = threading.Event()
    threading.Thread(target=poller.run, args=(stop,), name="poller", daemon=True).start()
    return stop


def main() -> None:
    from dotenv import load_dotenv

    from .config import load_config
    from .logs import setup_logging

    load_dotenv()
    config = load_config()
    setup_logging(config)
    poller = build_poller(config)
    if getattr(poller.store, "is_embedded", False):
        logger.warning("MONGODB_URI is not set: this poller has its own empty in-memory "
                       "store and sees no task of the web service. Set MONGODB_URI.")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    poller.run(stop)


if __name__ == "__main__":
    main()
