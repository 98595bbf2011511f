"""What the poller knows between cycles: each cluster's last job list
(``ClusterView``) and its active tasks, indexed so that a cycle touches only what
changed (``Watched``); and how a job array's elements make one state."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from .states import ARRAY_SEVERITY as _ARRAY_SEVERITY, RUNNING, SUBMIT_UNKNOWN, SUBMITTING
from .slurm.versions import JobInfo

FULL_SYNC_EVERY = 30          # cycles between fetches without update_time, for safety


def activity(diag) -> tuple:
    """slurmctld's counters (``/diag``) that move when a job starts or ends: jobs
    started, completed, cancelled and failed (counted by the requests that do it), and
    jobs pending and running (recounted every 30 s, which catches what no request
    counts: time limits, node failures, a pending job slurmctld kills itself).
    Submissions are left out, so other people's submits do not wake us. Equal tuples
    mean none of those happened (a restart or the midnight reset zeroes them: a
    change)."""
    return (diag.jobs_started, diag.jobs_completed, diag.jobs_canceled, diag.jobs_failed,
            diag.jobs_pending, diag.jobs_running)


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
        self.leading = False
        # v0.0.40+: "has any job changed since probe_since?" (GET /jobs?update_time=).
        self.probe_since: int | None = None   # slurmctld's time before the last full look
        self.probe_backoff = 0                # cycles without probing after a busy answer
        self.probe_skip = 0                   # of those, still to go
        self.probes = 0                       # probe cycles since the last full look
        self.known_jobs = 0                   # jobs in slurmctld's last job list
        # ... or, where a "yes" would be too long a list: slurmctld's job counters.
        self.activity: tuple | None = None    # taken before the last full look

    def forget_probe(self) -> None:
        """The next cycle looks at every watched job (after a failure, a new lease)."""
        self.probe_since, self.activity, self.probes = None, None, 0

    def refresh(self, client) -> set[int] | None:
        """One request: every job, or "no change since the last one". Returns the ids
        of jobs that changed since the last listing (None: nothing changed)."""
        self.cycles += 1
        since = None if self.cycles % FULL_SYNC_EVERY == 1 else self.update_time
        answer = client.get_jobs_since(since)
        jobs = answer.jobs
        self.update_time = answer.update_time
        self.failures = 0
        if jobs is None:
            return None
        old = self.jobs
        self.jobs = {j.job_id: j for j in jobs}
        self.by_comment = {j.comment: j for j in jobs if j.comment}
        self.arrays = {}
        for j in jobs:
            if j.array_job_id:
                self.arrays.setdefault(j.array_job_id, []).append(j)
        changed = {i for i, j in self.jobs.items() if old.get(i) != j}
        changed |= old.keys() - self.jobs.keys()
        changed |= set(self.arrays)           # an array's state is its elements' together
        return changed


class Watched:
    """One cluster's active tasks as the poller keeps them between cycles, indexed so
    that a cycle touches only what changed."""

    def __init__(self):
        self.tasks: dict[str, dict[str, Any]] = {}       # by uuid
        self.by_job: dict[int, set[str]] = {}            # Slurm job id -> uuids
        self.listing: set[str] = set()       # watched through the job list on every version
        self.submits: set[str] = set()       # unanswered submits, looked for every cycle
        self.dirty: set[str] = set()         # new or changed elsewhere: look whatever Slurm says
        self.missing: set[str] = set()       # Slurm did not list their job last time
        self.unsettled: set[str] = set()     # ended but still completing: look again

    def put(self, record: dict[str, Any]) -> None:
        uuid = record["task"]["uuid"]
        self.drop(uuid, keep_marks=True)
        self.tasks[uuid] = record
        job_id = record.get("slurm_job_id")
        if job_id is not None:
            self.by_job.setdefault(job_id, set()).add(uuid)
        if record["slurm_job_state"] in (SUBMITTING, SUBMIT_UNKNOWN) or job_id is None:
            self.submits.add(uuid)
            self.listing.add(uuid)
        elif record["task"].get("slurm", {}).get("array"):
            self.listing.add(uuid)

    def _unindex(self, uuid: str) -> None:
        """The task out of ``tasks`` and ``by_job`` (its marks left as they are)."""
        old = self.tasks.pop(uuid, None)
        job_id = old.get("slurm_job_id") if old is not None else None
        ids = self.by_job.get(job_id) if job_id is not None else None
        if ids is not None:
            ids.discard(uuid)
            if not ids:
                del self.by_job[job_id]

    def drop_many(self, uuids: list[str]) -> None:
        """``drop`` for each of ``uuids`` (a cycle's ended tasks), the marks cleared
        in one pass each."""
        for uuid in uuids:
            self._unindex(uuid)
        for marks in (self.listing, self.submits, self.dirty, self.missing, self.unsettled):
            marks.difference_update(uuids)

    def drop(self, uuid: str, keep_marks: bool = False) -> None:
        self._unindex(uuid)
        self.listing.discard(uuid)
        self.submits.discard(uuid)
        if not keep_marks:
            self.dirty.discard(uuid)
            self.missing.discard(uuid)
            self.unsettled.discard(uuid)


def array_state(array_job_id: int, elements: list[JobInfo]) -> JobInfo:
    """One state for a whole job array: active while any element is (RUNNING if one
    runs), else the most severe final state, with the highest exit code."""
    first = min(elements, key=lambda j: (j.array_task_id is None, j.array_task_id or 0))
    unfinished = [j for j in elements if not j.is_terminal]
    if unfinished:
        state = RUNNING if any(j.state == RUNNING for j in unfinished) else unfinished[0].state
        return replace(first, job_id=array_job_id, state=state, state_flags=(), end_time=None)
    worst = max(elements, key=lambda j: _ARRAY_SEVERITY.index(j.state)
                if j.state in _ARRAY_SEVERITY else len(_ARRAY_SEVERITY))
    codes = [j.exit_code for j in elements if j.exit_code is not None]
    ends = [j.end_time for j in elements if j.end_time]
    starts = [j.start_time for j in elements if j.start_time]
    return replace(worst, job_id=array_job_id, state_flags=(),
                   exit_code=max(codes) if codes else None,
                   start_time=min(starts) if starts else None, end_time=max(ends) if ends else None)


