"""Saving what Slurm says about a task, and the notifications each change causes.

Every observed state goes through ``change_state`` — the submit outcome (PENDING,
SUBMIT_FAILED, SUBMIT_UNKNOWN), a poll, an event from slurmctld, a GET lookup, a
cancel, a reconciled submit, LOST: one compare-and-set update on the previous state
that appends the history entry and pushes the change's deliveries into the task's
outbox. If two pollers (or a poller and a lookup) see the same change, only one update
applies, so each change is recorded, and reported, once.

Each state is reported at most once per task (``notified_states`` on the record), so a
job that is suspended and resumed, or requeued, does not announce RUNNING twice. A job
seen PENDING and then already finished (it ran between two looks) also reports the
RUNNING the user asked to hear about, just before its end.
"""
from __future__ import annotations

import logging
import uuid as uuid_module
from datetime import datetime
from typing import Any, Mapping

from . import metrics
from .errors import JobAlreadyTracked, StoreUnavailable
from .notify import targets
from .states import BEFORE_RUNNING, DEFAULT_REPORTED_STATES, LOST, RUNNING, TERMINAL_STATES
from .slurm.versions import JobInfo
from .store import utcnow

logger = logging.getLogger(__name__)


def wanted_states(record: Mapping[str, Any]) -> set[str]:
    notification = record.get("task", {}).get("notification") or {}
    return set(notification.get("on") or DEFAULT_REPORTED_STATES)


def plan_deliveries(record: Mapping[str, Any], state: str, now: datetime) -> list[dict[str, Any]]:
    """The deliveries reporting ``state`` (none if not asked for, or already reported)."""
    notification = record.get("task", {}).get("notification") or {}
    if not notification.get("methods") \
            or state not in (notification.get("on") or DEFAULT_REPORTED_STATES) \
            or state in (record.get("notified_states") or ()):
        return []
    params = notification.get("params") or {}
    return [
        {"id": uuid_module.uuid4().hex, "method": method, "target": target, "state": state,
         "status": "pending", "attempts": 0, "next_at": now, "created_at": now,
         "last_error": None, "sent_at": None}
        for method in notification.get("methods") or []
        for target in targets(method, params.get(method) or {})
    ]


def plan_change(record: Mapping[str, Any], state: str, fields: Mapping[str, Any] | None,
                now: datetime) -> tuple[list[dict[str, Any]], list[str]]:
    """The deliveries a change to ``state`` causes, and the states they report."""
    states = []
    old = record.get("slurm_job_state")
    if (state in TERMINAL_STATES and old in BEFORE_RUNNING
            and (fields or {}).get("start_time")):
        states.append(RUNNING)           # it ran between two looks: report that too
    states.append(state)
    deliveries: list[dict[str, Any]] = []
    reported: list[str] = []
    for s in states:
        planned = plan_deliveries(record, s, now)
        if planned:
            deliveries += planned
            reported.append(s)
    return deliveries, reported


def initial_deliveries(record: dict[str, Any]) -> None:
    """Plan the deliveries of a new record's first state (a registered job) in place."""
    deliveries, reported = plan_change({**record, "slurm_job_state": None},
                                       record["slurm_job_state"], record, record["created_at"])
    record["deliveries"] = deliveries
    record["notified_states"] = reported


_COUNTERS: dict[str, Any] = {}


def _state_changes(state: str):
    """The state-change counter's child for ``state`` (looked up once)."""
    counter = _COUNTERS.get(state)
    if counter is None:
        counter = _COUNTERS[state] = metrics.STATE_CHANGES.labels(state)
    return counter


def _planned(record: Mapping[str, Any], state: str, fields: dict[str, Any] | None,
             note: str | None, now: datetime) -> dict[str, Any]:
    """The store update (``update_state``'s arguments) changing the task to ``state``."""
    deliveries, reported = plan_change(record, state, fields, now)
    fields = dict(fields or {})
    if reported:
        fields["notified_states"] = list(record.get("notified_states") or ()) + reported
    return {"uuid": record["task"]["uuid"], "state": state,
            "expected": record["slurm_job_state"], "fields": fields, "note": note,
            "deliveries": deliveries}


def _applied(record: Mapping[str, Any], change: dict[str, Any]) -> None:
    """After ``change`` was saved: the record in memory and the log line (the counter
    is the caller's: a batch adds its changes to it once per state)."""
    old, state, fields, note = (change["expected"], change["state"], change["fields"],
                                change["note"])
    if isinstance(record, dict):
        record.update(fields)
        record["slurm_job_state"] = state
    deliveries = change["deliveries"]
    logger.info("state task_uuid=%s slurm_job_id=%s %s -> %s%s%s", change["uuid"],
                fields.get("slurm_job_id", record.get("slurm_job_id")), old, state,
                f" ({note})" if note else "",
                f", {len(deliveries)} notification(s) queued" if deliveries else "")


def change_state(store, record: Mapping[str, Any], state: str, *,
                 fields: dict[str, Any] | None = None, note: str | None = None,
                 now: datetime | None = None) -> bool:
    """Compare-and-set the task from its current state to ``state`` with its history
    entry and deliveries. ``record`` needs ``task``, ``slurm_job_state`` and
    ``notified_states`` (the store's active projection has them). Returns whether
    this call changed the task; on success ``record`` is updated in place."""
    change = _planned(record, state, fields, note, now or utcnow())
    try:
        changed = store.update_state(**change)
    except JobAlreadyTracked:
        job_id = change["fields"].get("slurm_job_id")
        if job_id is None:
            raise
        # Slurm has just given this job id to this task's job: whoever else holds it
        # is about an older job that is gone (a rebuilt cluster).
        release_job_id(store, record["task"].get("cluster"), job_id, keep_uuid=change["uuid"])
        changed = store.update_state(**change)
    if changed:
        _applied(record, change)
        _state_changes(state).inc()
    return changed


def is_owners_job(record: Mapping[str, Any], job: JobInfo) -> bool:
    """Whether ``job`` belongs to the task's user. A task is only ever about its own
    user's job: a job id reused for someone else's job (a rebuilt cluster), or a
    record made before ownership was checked, must never show or report another
    user's job. A job that does not say its user (a test double) is not refused."""
    return job.user_name is None or job.user_name == record["task"].get("username")


def release_job_id(store, cluster: str | None, job_id: int, *, keep_uuid: str | None = None,
                   owner: str | None = None) -> int:
    """Retire (as LOST) the active tasks holding ``job_id`` on ``cluster`` that are not
    about the job Slurm has under that id now: all but ``keep_uuid``, or, with
    ``owner``, those whose user is not the job's owner. Returns how many."""
    released = 0
    for other in store.job_holders(job_id, cluster):
        if not other["active"] or other["uuid"] == keep_uuid:
            continue
        if owner is not None and other["username"] == owner:
            continue
        record = store.get(other["uuid"])
        if record is None:
            continue
        note = (f"Slurm job {job_id} is not this task's job (it belongs to another user or "
                f"the id was reused); this task no longer tracks it")
        if change_state(store, record, LOST, note=note, fields={"state_reason": "JobIdReused"}):
            released += 1
            logger.warning("task_uuid=%s slurm_job_id=%s released: %s", other["uuid"], job_id, note)
    return released


def job_facts(job: JobInfo) -> dict[str, Any]:
    """What a record keeps of a job: how it ended and when."""
    return {"exit_code": job.exit_code, "signal": job.signal,
            "state_reason": job.state_reason, "start_time": job.start_time,
            "end_time": job.end_time, "elapsed": job.elapsed if job.end_time else None,
            "missing_since": None}


def settled_state(job: JobInfo) -> str | None:
    """The state to store for ``job``, or None while Slurm is still finishing it
    (e.g. CANCELLED+COMPLETING: wait for the final word and exit code)."""
    if job.state in TERMINAL_STATES and not job.is_terminal:
        return None
    return job.state


def record_job_state(store, record: dict[str, Any], job: JobInfo,
                     now: datetime | None = None) -> bool:
    """Save a state read from Slurm if it differs from the record's. Returns whether
    this call changed the record."""
    state = settled_state(job)
    if state is None or state == record["slurm_job_state"]:
        return False
    if not is_owners_job(record, job):
        logger.warning("not recording job %s for task_uuid=%s: the job is another user's",
                       job.job_id, record["task"]["uuid"])
        return False
    try:
        return change_state(store, record, state, fields=job_facts(job), now=now)
    except StoreUnavailable:
        logger.warning("could not save state task_uuid=%s slurm_job_id=%s: MongoDB unavailable",
                       record["task"]["uuid"], job.job_id)
        return False


def record_job_states(store, pairs, now: datetime | None = None) -> dict[str, Any]:
    """``record_job_state`` for many ``(record, job)`` pairs (a poll cycle's changes),
    the changes written in one batch (``update_states``: one round trip to MongoDB
    instead of one per task); a pair with nothing to record is left as
    ``record_job_state`` leaves it. Each task is still its own compare-and-set with
    its history entry and deliveries, so two pollers never both record (or report) a
    change. Returns, by task uuid, whether this call changed it, or the exception that
    stopped it (for the caller to report as that task's error)."""
    now = now or utcnow()
    out: dict[str, Any] = {}
    todo: list[tuple[dict[str, Any], JobInfo, dict[str, Any]]] = []
    for record, job in pairs:
        uuid = record["task"]["uuid"]
        state = settled_state(job)
        if state is None or state == record["slurm_job_state"] or not is_owners_job(record, job):
            out[uuid] = record_job_state(store, record, job, now)    # nothing, or refused
            continue
        todo.append((record, job, _planned(record, state, job_facts(job), None, now)))
    if not todo:
        return out
    try:
        results = store.update_states([change for _, _, change in todo])
    except StoreUnavailable:
        logger.warning("could not save %d state change(s): MongoDB unavailable", len(todo))
        return {**out, **{change["uuid"]: False for _, _, change in todo}}
    except Exception:  # noqa: BLE001 - one task's failure: find it, one task at a time
        results = [None] * len(todo)
    applied: dict[str, int] = {}
    for (record, job, change), result in zip(todo, results):
        uuid = change["uuid"]
        if result is True:
            _applied(record, change)
            applied[change["state"]] = applied.get(change["state"], 0) + 1
        elif isinstance(result, StoreUnavailable):
            logger.warning("could not save state task_uuid=%s slurm_job_id=%s: %s",
                           uuid, job.job_id, result.message)
            result = False
        elif result is not False:       # refused (job id held) or not tried: on its own
            try:
                result = record_job_state(store, record, job, now)
            except Exception as exc:  # noqa: BLE001 - reported as this task's error
                result = exc
        out[uuid] = result
    for state, n in applied.items():        # prometheus_client locks on each inc
        _state_changes(state).inc(n)
    return out
