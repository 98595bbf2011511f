"""The poller: watches every active task with one slurmrestd request per cycle.

``run_once()`` does one cycle and returns counts; ``run(stop)`` loops until ``stop``
is set; ``main()`` is the program supervisord runs (``python -m app.poller``), whose
SIGTERM/SIGINT handlers set ``stop`` so shutdown does not wait out a sleep.

A cycle: the active tasks from the store -> ``GET /jobs?update_time=`` (HTTP 304 when
nothing changed since the last cycle, so usually a few bytes) -> for each task, a
compare-and-set of any new state with its notifications queued in the same update ->
the dispatcher sends what is due. A job slurmctld no longer knows (purged after
MinJobAge) is looked up in slurmdb when SLURM_SLURMDB is on; otherwise, once it has
been missing for SLURM_POLL_LOST_AFTER seconds, it becomes LOST, which is reported
like any final state. Errors for one task are logged with its id and the cycle goes on.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable

from . import metrics
from .constants import SUBMIT_FAILED, SUBMIT_UNKNOWN, SUBMITTING, LOST
from .errors import SlurmJobNotFound, SlurmProxyError, StoreUnavailable
from .slurm.versions import JobInfo
from .store import utcnow
from .tracking import change_state, is_owners_job, job_facts, record_job_state, settled_state

logger = logging.getLogger(__name__)

FULL_SYNC_EVERY = 30          # cycles between fetches without update_time, for safety
SUBMITTING_GRACE = 60.0       # seconds a SUBMITTING record may be in flight


class ClusterView:
    """What the poller last heard from one cluster's slurmrestd."""

    def __init__(self, name: str):
        self.name = name
        self.jobs: dict[int, JobInfo] = {}
        self.by_comment: dict[str, JobInfo] = {}
        self.arrays: dict[int, list[JobInfo]] = {}
        self.update_time: int | None = None
        self.cycles = 0
        self.failures = 0

    def refresh(self, client) -> None:
        """One request: every job (or 304: nothing changed since the last one)."""
        self.cycles += 1
        since = None if self.cycles % FULL_SYNC_EVERY == 1 else self.update_time
        answer = client.get_jobs_since(since)
        jobs = answer.jobs
        if jobs is not None:
            self.jobs = {j.job_id: j for j in jobs}
            self.by_comment = {j.comment: j for j in jobs if j.comment}
            self.arrays = {}
            for j in jobs:
                if j.array_job_id:
                    self.arrays.setdefault(j.array_job_id, []).append(j)
        self.update_time = answer.update_time
        self.failures = 0


class Poller:
    def __init__(self, store, slurm, dispatcher=None, *, interval: float = 10.0,
                 lost_after: float = 600.0, slurmdb: bool = False,
                 clock: Callable[[], datetime] = utcnow):
        from .slurm.clusters import Clusters

        self.store, self.dispatcher = store, dispatcher
        self.slurm = slurm if isinstance(slurm, Clusters) else Clusters({"default": slurm})
        self.interval, self.lost_after, self.slurmdb = interval, lost_after, slurmdb
        self.clock = clock
        self.views: dict[str, ClusterView] = {}
        self.last_cycle_at: datetime | None = None

    @property
    def failures(self) -> int:
        """Consecutive failed cycles of the worst cluster."""
        return max((v.failures for v in self.views.values()), default=0)

    @classmethod
    def from_config(cls, store, slurm, dispatcher, config, **kwargs) -> "Poller":
        return cls(store, slurm, dispatcher, interval=config["SLURM_POLL_INTERVAL"],
                   lost_after=config["SLURM_POLL_LOST_AFTER"], slurmdb=config["SLURM_SLURMDB"],
                   **kwargs)

    # -- one cycle -----------------------------------------------------------------
    def run_once(self) -> dict[str, Any]:
        started = time.monotonic()
        counts = self._cycle()
        metrics.POLL_SECONDS.observe(time.monotonic() - started)
        metrics.POLL_CYCLES.labels("ok" if counts["slurm_ok"] and not counts["errors"]
                                   else "error").inc()
        try:
            self.store.beat("poller", self.clock(), {"interval": self.interval,
                                                     "active": counts["active"],
                                                     "slurm_ok": counts["slurm_ok"]})
        except StoreUnavailable:
            pass
        return counts

    def _cycle(self) -> dict[str, Any]:
        counts: dict[str, Any] = {"active": 0, "changed": 0, "lost": 0, "errors": 0,
                                  "slurm_ok": True}
        try:
            active = self.store.active_tasks()
        except StoreUnavailable as exc:
            logger.warning("poll skipped: %s", exc.message)
            counts["errors"] += 1
            return counts
        counts["active"] = len(active)
        by_cluster: dict[str, list[dict[str, Any]]] = {}
        for record in active:
            by_cluster.setdefault(self.slurm.name_of(record), []).append(record)
        now = self.clock()
        for name, records in by_cluster.items():
            view = self.views.setdefault(name, ClusterView(name))
            try:
                view.refresh(self.slurm.get(name))
            except SlurmProxyError as exc:
                view.failures += 1
                counts["slurm_ok"] = False
                counts["errors"] += 1
                logger.warning("poll: cluster %s: slurmrestd failed (%d in a row): %s",
                               name, view.failures, exc.message)
                continue
            for record in records:
                try:
                    outcome = self._track(record, view, now)
                except Exception:  # noqa: BLE001 - one task must not stop the others
                    counts["errors"] += 1
                    logger.exception("poll: task_uuid=%s slurm_job_id=%s failed",
                                     record["task"]["uuid"], record.get("slurm_job_id"))
                    continue
                if outcome:
                    counts[outcome] += 1
        if self.dispatcher is not None:
            counts["notifications"] = self.dispatcher.run_once()
        self.last_cycle_at = self.clock()
        return counts

    def _track(self, record: dict[str, Any], view: "ClusterView", now: datetime) -> str | None:
        state = record["slurm_job_state"]
        if state in (SUBMITTING, SUBMIT_UNKNOWN):
            return self._reconcile(record, view, now)
        job_id = record.get("slurm_job_id")
        job = view.jobs.get(job_id)
        if job is not None and record["task"].get("slurm", {}).get("array"):
            job = array_state(job_id, view.arrays.get(job_id) or [job])
        if job is not None and not is_owners_job(record, job):
            # Another user's job under this id: never recorded or reported to this task.
            job = None
        if job is not None:
            if record_job_state(self.store, record, job, now):
                return "changed"
            if record.get("missing_since"):
                self.store.set_fields(record["task"]["uuid"], {"missing_since": None})
            return None
        return self._missing(record, view, now)

    def _reconcile(self, record: dict[str, Any], view: "ClusterView", now: datetime) -> str | None:
        """A submit whose answer we never saw: find the job by its comment."""
        uuid = record["task"]["uuid"]
        age = (now - record["created_at"]).total_seconds()
        if record["slurm_job_state"] == SUBMITTING and age < SUBMITTING_GRACE:
            return None                              # a submit still in flight
        job = view.by_comment.get(f"slurm-proxy:{uuid}")
        if job is not None and not is_owners_job(record, job):
            job = None                  # anyone may write any comment on their own job
        if job is not None:
            state = settled_state(job) or "RUNNING"          # still completing
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

    def _missing(self, record: dict[str, Any], view: "ClusterView", now: datetime) -> str | None:
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
            self.store.set_fields(uuid, {"missing_since": now},
                                  expected=record["slurm_job_state"])
            return None
        if (now - since).total_seconds() < self.lost_after:
            return None
        note = (f"slurmctld has not known job {job_id} for {int(self.lost_after)} s and "
                f"{'slurmdb has no final state for it' if self.slurmdb else 'no accounting is configured'}")
        changed = change_state(self.store, record, LOST, note=note,
                               fields={"state_reason": "JobLost"}, now=now)
        return "lost" if changed else None

    # -- the loop ------------------------------------------------------------------
    def next_wait(self) -> float:
        """The interval, doubled per consecutive slurmrestd failure up to 8x."""
        return self.interval * min(8, 2 ** self.failures) if self.failures else self.interval

    def run(self, stop: threading.Event, tick: float = 1.0) -> None:
        """Poll every interval (backing off while slurmrestd fails); send due
        notifications every ``tick`` seconds in between."""
        logger.info("poller started: interval %.1f s", self.interval)
        next_poll = self.clock()
        while not stop.is_set():
            try:
                if self.clock() >= next_poll:
                    started = self.clock()
                    counts = self.run_once()
                    # Fixed rate: the next poll is an interval after this one began.
                    next_poll = max(started + timedelta(seconds=self.next_wait()), self.clock())
                    if counts["changed"] or counts["lost"] or counts["errors"]:
                        logger.info("poll: %s", counts)
                elif self.dispatcher is not None:
                    self.dispatcher.run_once()
            except Exception:  # noqa: BLE001 - the only catch-all: keep watching
                logger.exception("poll cycle failed")
            # Wake for the next poll on time, not up to a tick late.
            until_poll = (next_poll - self.clock()).total_seconds()
            stop.wait(max(0.0, min(tick, until_poll)))
        logger.info("poller stopped")


# An array ends with the worst of its elements' ends.
_ARRAY_SEVERITY = ("COMPLETED", "CANCELLED", "PREEMPTED", "DEADLINE", "TIMEOUT", "OUT_OF_MEMORY",
                   "NODE_FAIL", "BOOT_FAIL", "FAILED")


def array_state(array_job_id: int, elements: list[JobInfo]) -> JobInfo:
    """One state for a whole job array: active while any element is (RUNNING if one
    runs), else the most severe final state, with the highest exit code."""
    from dataclasses import replace

    first = min(elements, key=lambda j: (j.array_task_id is None, j.array_task_id or 0))
    unfinished = [j for j in elements if not j.is_terminal]
    if unfinished:
        state = "RUNNING" if any(j.state == "RUNNING" for j in unfinished) else unfinished[0].state
        return replace(first, job_id=array_job_id, state=state, state_flags=(), end_time=None)
    worst = max(elements, key=lambda j: _ARRAY_SEVERITY.index(j.state)
                if j.state in _ARRAY_SEVERITY else len(_ARRAY_SEVERITY))
    codes = [j.exit_code for j in elements if j.exit_code is not None]
    ends = [j.end_time for j in elements if j.end_time]
    starts = [j.start_time for j in elements if j.start_time]
    return replace(worst, job_id=array_job_id, state_flags=(),
                   exit_code=max(codes) if codes else None,
                   start_time=min(starts) if starts else None, end_time=max(ends) if ends else None)


def build_poller(config, store=None, slurm=None, notifiers=None) -> Poller:
    from . import build_slurm_client
    from .notify import build_notifiers
    from .notify.dispatcher import Dispatcher
    from .store import TaskStore

    store = store if store is not None else TaskStore.from_config(config)
    slurm = slurm if slurm is not None else build_slurm_client(config)
    notifiers = notifiers if notifiers is not None else build_notifiers(config)
    return Poller.from_config(store, slurm, Dispatcher.from_config(store, notifiers, config), config)


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
    setup_logging()
    config = load_config()
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
