"""How the poller asks one cluster's slurmrestd what changed, at a cost proportional
to the change: ``Looker(view, client, watched, counts)`` returns the tasks to look at,
each with its job (None: Slurm did not list it).

- v0.0.40+: ``GET /jobs/state?job_id=…`` for our own active jobs (batches of
  ``STATE_BATCH``; about 60 bytes a job), then ``GET /job/{id}`` only for jobs whose
  state changed (or, when more than 1/``LIST_OVER_GETS`` of slurmctld's jobs did,
  its whole list once: the cheaper read then). With ``PROBE_MIN_TASKS`` or more, a
  cycle first asks whether anything changed since the last full look:
  ``GET /jobs?update_time=T``, or, while slurmctld knows more than ``PROBE_MAX_JOBS``
  jobs, ``GET /diag``'s job counters (``_look_modern``).
- v0.0.38 (and for job arrays and unanswered submits): ``GET /jobs?update_time=``;
  "no change" costs nothing; a new listing is compared with the last one and only
  tasks whose job changed are looked at. On a busy 22.05 cluster with few of ours
  among many jobs, our jobs are read one by one between lists (``_look_one_by_one``).
"""
from __future__ import annotations

import logging
from typing import Any

from .errors import SlurmJobNotFound, SlurmProxyError
from .poll_state import ClusterView, Watched, activity, array_state
from .slurm.versions import JobInfo
from .states import TERMINAL_STATES, is_terminal

logger = logging.getLogger(__name__)

STATE_BATCH = 500             # job ids per GET /jobs/state, unless the adapter says
# v0.0.40+: a quiet cycle asks slurmctld "any job changed since T?" (one small answer);
# a yes brings slurmctld's whole job list (about 10 kB a job), so:
PROBE_MIN_TASKS = 100         # fewer watched jobs: /jobs/state for them is as cheap
PROBE_MAX_JOBS = 10_000       # no update_time probe when that list would be longer
                              # (Slurm's default MaxJobCount): GET /diag's counters
PROBE_MAX_SKIP = 32           # after a busy answer, cycles without probing (doubling)
PROBE_FULL_EVERY = 30         # look at every watched job at least every this many cycles
# Reading the jobs with news: a GET /job/{id} each costs the poller about as much CPU as
# this many jobs of slurmctld's whole list (bench/poll.py: ~0.12-0.18 ms against
# ~0.025 ms a listed job), so with more news than 1/LIST_OVER_GETS of the list's jobs,
# the list (from LIST_MIN_NEWS jobs: fewer cost a few ms whichever way), if its size is
# known and at most PROBE_MAX_JOBS.
LIST_OVER_GETS = 6
LIST_MIN_NEWS = 50
# v0.0.38 (no /jobs/state): on a busy cluster where ours are few among many, each cycle
# reads our jobs one by one (GET /job/{id}) instead of slurmctld's whole job list.
ONE_BY_ONE_MAX = 50           # at most this many of our jobs
ONE_BY_ONE_RATIO = 20         # ... and slurmctld knows at least this many times more


class Looker:
    """The look strategies and their thresholds (tests and benchmarks lower them)."""

    def __init__(self):
        self.probe_min_tasks, self.probe_max_jobs = PROBE_MIN_TASKS, PROBE_MAX_JOBS
        self.one_by_one_max = ONE_BY_ONE_MAX

    def __call__(self, view: ClusterView, client, watched: Watched,
                 counts: dict[str, Any]) -> list[tuple[dict[str, Any], JobInfo | None]]:
        """Ask slurmrestd; return the tasks to look at, each with its job (None:
        Slurm did not list it)."""
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
        by_job, tasks, listing, is_news = (watched.by_job, watched.tasks, watched.listing,
                                           self._is_news)

        def keep(job_id: int, base: str, flags: tuple[str, ...]) -> bool:
            uuids = by_job.get(job_id)
            if not uuids:
                return False
            listed.add(job_id)
            news = False
            for uuid in uuids:             # each of them: _is_news notes the unsettled
                if uuid not in listing and is_news(watched, uuid, tasks[uuid], base, flags):
                    news = True
            return news
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
        """``/jobs/state`` for these tasks' jobs; then, for those with news, each job
        in full: one ``GET /job/{id}`` each, or, when so many changed that slurmctld's
        whole list is the cheaper read, that list (``LIST_OVER_GETS``)."""
        ids = sorted({r["slurm_job_id"] for r in records})
        states: dict[int, tuple[str, tuple[str, ...]]] = {}
        batch = getattr(client.adapter, "jobs_state_batch", STATE_BATCH)
        for i in range(0, len(ids), batch):
            states.update(client.get_job_states(ids[i:i + batch]))
            counts["slurm_requests"] += 1
        view.failures = 0
        todo, news = [], []
        missing, unsettled, is_news = watched.missing, watched.unsettled, self._is_news
        marked, seen_of = bool(missing or unsettled), states.get
        for record in records:
            seen = seen_of(record["slurm_job_id"])
            if seen is None:
                todo.append((record, None))
            elif seen[0] == record["slurm_job_state"] and seen[0] not in TERMINAL_STATES:
                if marked:       # the common case, no news; a task's uuid (one more dict
                    uuid = record["task"]["uuid"]     # read a task) only if any is marked
                    unsettled.discard(uuid)
                    if uuid in missing:
                        news.append(record)
            elif is_news(watched, record["task"]["uuid"], record, *seen):
                news.append(record)
        if watched.dirty:
            watched.dirty.difference_update(r["task"]["uuid"] for r in records)
        if news:
            todo += self._read_jobs(view, client, watched, news, counts)
        return todo

    def _read_jobs(self, view, client, watched, records, counts):
        """The jobs of ``records`` in full, by the cheaper way (``LIST_OVER_GETS``).
        The list only when its size is known (from the last one read) and within
        what a probe may bring (``probe_max_jobs``): never a list of unknown size."""
        listed = view.known_jobs
        if len(records) >= LIST_MIN_NEWS and 0 < listed <= self.probe_max_jobs \
                and len(records) * LIST_OVER_GETS > listed:
            wanted = {r["slurm_job_id"] for r in records}
            answer = client.get_jobs_since(None, keep=lambda job_id, *_: job_id in wanted)
            counts["slurm_requests"] += 1
            view.known_jobs = answer.listed
            by_id = {j.job_id: j for j in answer.jobs}
            jobs = [(r, by_id.get(r["slurm_job_id"])) for r in records]
        else:
            jobs = self._one_by_one(client, records, counts)
        for record, job in jobs:
            if job is not None and job.state in TERMINAL_STATES and not job.is_terminal:
                watched.unsettled.add(record["task"]["uuid"])  # /jobs/state was ahead
        return jobs

    def _look_one_by_one(self, client, watched, counts):
        """v0.0.38 on a busy cluster: each of our few jobs with ``GET /job/{id}``
        (a few kB each) rather than every job slurmctld knows."""
        records = [r for u, r in watched.tasks.items() if u not in watched.listing]
        todo = self._one_by_one(client, records, counts)
        watched.dirty.difference_update(r["task"]["uuid"] for r in records)
        return todo

    @staticmethod
    def _one_by_one(client, records, counts):
        """Each record's job, one ``GET /job/{id}`` each (None: Slurm no longer knows it)."""
        jobs = []
        for record in records:
            try:
                job = client.get_job(record["slurm_job_id"])
            except SlurmJobNotFound:
                job = None
            counts["slurm_requests"] += 1
            jobs.append((record, job))
        return jobs

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
