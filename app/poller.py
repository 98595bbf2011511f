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
   ``updated_at``), each as its uuid, job id and state: its own writes come back that
   small, and only tasks new or changed elsewhere are then read in full. A cycle where
   nothing changed reads and writes no task record.
2. The lease: one poller leads each cluster (``take_lease``, renewed every cycle with a
   TTL of 1.5 intervals); the others stand by and retry every quarter interval, so a
   standby takes over within two intervals of the leader dying.
3. slurmrestd, by the leader only, as ``look.Looker`` decides: a few hundred bytes
   when nothing changed, our own jobs' states when something did, in full only the
   jobs with news.
   Each new state goes through ``tracking.change_state`` (compare-and-set, history,
   deliveries); a cycle's several changes are saved in one batch of such updates
   (``tracking.record_job_states``: one ``bulk_write`` on MongoDB). A job slurmctld
   no longer knows (purged after MinJobAge) is looked up in slurmdb when
   SLURM_SLURMDB is on; otherwise, once missing for SLURM_POLL_LOST_AFTER seconds, it
   becomes LOST.
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
from .look import Looker
from .poll_state import ClusterView, Watched, array_state  # noqa: F401 - array_state: API
from .slurm.versions import JobInfo
from .states import FINAL_STATES, LOST, RUNNING, SUBMIT_FAILED, SUBMIT_UNKNOWN, SUBMITTING
from .store import utcnow
from .tracking import (change_state, is_owners_job, job_facts, record_job_state,
                       record_job_states, settled_state)

logger = logging.getLogger(__name__)

SUBMITTING_GRACE = 60.0       # seconds a SUBMITTING record may be in flight
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
        self.look = Looker()

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
        fresh = []
        for head in self.store.changed_since(self.watermark):
            uuid = head["task"]["uuid"]
            if not head.get("active", True):
                self._drop(uuid)
                continue
            cluster = self.cluster_of.get(uuid)
            known = self.watched[cluster].tasks.get(uuid) if cluster else None
            if known is not None and known["slurm_job_state"] == head["slurm_job_state"] \
                    and known.get("slurm_job_id") == head.get("slurm_job_id"):
                continue                         # our own write, read back
            fresh.append(uuid)
        if fresh:                        # new, or changed elsewhere: read in full
            for record in self.store.active_tasks(fresh):
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
                todo = self.look(view, self.slurm.get(view.name), watched, counts)
            except SlurmProxyError as exc:
                view.failures += 1
                view.forget_probe()                   # a look cut short: look again in full
                counts["slurm_ok"] = False
                counts["errors"] += 1
                logger.warning("poll: cluster %s: slurmrestd failed (%d in a row): %s",
                               name, view.failures, exc.message)
                continue
            self._take(todo, view, watched, now, counts)
        self.last_cycle_at = self.clock()
        return counts

    def _take(self, todo, view: ClusterView, watched: Watched, now: datetime,
              counts: dict[str, Any]) -> None:
        """Record what the look found: each task's state, or its job missing. The
        tasks that ended leave ``watched`` together, at the end."""
        recorded = self._record_many(todo, now)
        ended = []
        for record, job in todo:
            uuid = record["task"]["uuid"]
            try:
                outcome = self._track(record, view, watched, job, now, recorded)
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
                ended.append(uuid)
            elif outcome:
                self._put(record, dirty=False)        # its job id or kind may be new
        for uuid in ended:
            self.cluster_of.pop(uuid, None)
        watched.drop_many(ended)

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

    # -- one task ------------------------------------------------------------------
    def _record_many(self, todo, now: datetime) -> dict[str, Any]:
        """The states read from Slurm for the tasks to look at, saved in one batch
        (``tracking.record_job_states``) when there are several: by uuid, whether each
        changed (or the exception that stopped it), for ``_track``."""
        pairs = [(r, j) for r, j in todo if j is not None and is_owners_job(r, j)
                 and r["slurm_job_state"] not in (SUBMITTING, SUBMIT_UNKNOWN)]
        return record_job_states(self.store, pairs, now) if len(pairs) > 1 else {}

    def _track(self, record: dict[str, Any], view: ClusterView, watched: Watched,
               job: JobInfo | None, now: datetime, recorded=None) -> str | None:
        state = record["slurm_job_state"]
        uuid = record["task"]["uuid"]
        if state in (SUBMITTING, SUBMIT_UNKNOWN):
            return self._reconcile(record, view, now)
        if job is not None and not is_owners_job(record, job):
            # Another user's job under this id: never recorded or reported to this task.
            job = None
        if job is not None:
            watched.missing.discard(uuid)
            changed = recorded.pop(uuid) if recorded and uuid in recorded \
                else record_job_state(self.store, record, job, now)
            if isinstance(changed, Exception):
                raise changed
            if changed:
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
