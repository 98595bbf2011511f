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
from .constants import DEFAULT_NOTIFY_STATES, SUBMIT_UNKNOWN, SUBMITTING
from .notify import targets
from .errors import StoreUnavailable
from .slurm.states import TERMINAL_STATES
from .slurm.versions import JobInfo
from .store import utcnow

logger = logging.getLogger(__name__)


def wanted_states(record: Mapping[str, Any]) -> set[str]:
    notification = record.get("task", {}).get("notification") or {}
    return set(notification.get("on") or DEFAULT_NOTIFY_STATES)


def plan_deliveries(record: Mapping[str, Any], state: str, now: datetime) -> list[dict[str, Any]]:
    """The deliveries reporting ``state`` (none if not asked for, or already reported)."""
    notification = record.get("task", {}).get("notification") or {}
    if state not in wanted_states(record) or state in (record.get("notified_states") or ()):
        return []
    params = notification.get("params") or {}
    return [
        {"id": uuid_module.uuid4().hex, "method": method, "target": target, "state": state,
         "status": "pending", "attempts": 0, "next_at": now, "created_at": now,
         "last_error": None, "sent_at": None}
        for method in notification.get("methods") or []
        for target in targets(method, params.get(method) or {})
    ]


# States from which a job that is found finished must have run in between.
_BEFORE_RUNNING = frozenset({"PENDING", SUBMITTING, SUBMIT_UNKNOWN, "REQUEUED"})


def plan_change(record: Mapping[str, Any], state: str, fields: Mapping[str, Any] | None,
                now: datetime) -> tuple[list[dict[str, Any]], list[str]]:
    """The deliveries a change to ``state`` causes, and the states they report."""
    states = []
    old = record.get("slurm_job_state")
    if (state in TERMINAL_STATES and old in _BEFORE_RUNNING
            and (fields or {}).get("start_time")):
        states.append("RUNNING")           # it ran between two looks: report that too
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


def change_state(store, record: Mapping[str, Any], state: str, *,
                 fields: dict[str, Any] | None = None, note: str | None = None,
                 now: datetime | None = None) -> bool:
    """Compare-and-set the task from its current state to ``state`` with its history
    entry and deliveries. ``record`` needs ``task``, ``slurm_job_state`` and
    ``notified_states`` (the store's active projection has them). Returns whether
    this call changed the task; on success ``record`` is updated in place."""
    uuid = record["task"]["uuid"]
    old = record["slurm_job_state"]
    deliveries, reported = plan_change(record, state, fields, now or utcnow())
    fields = dict(fields or {})
    if reported:
        fields["notified_states"] = list(record.get("notified_states") or ()) + reported
    changed = store.update_state(uuid, state=state, expected=old, fields=fields, note=note,
                                 deliveries=deliveries)
    if changed:
        if isinstance(record, dict):
            record.update(fields)
            record["slurm_job_state"] = state
        metrics.STATE_CHANGES.labels(state).inc()
        logger.info("state task_uuid=%s slurm_job_id=%s %s -> %s%s%s", uuid,
                    (fields or {}).get("slurm_job_id", record.get("slurm_job_id")), old, state,
                    f" ({note})" if note else "",
                    f", {len(deliveries)} notification(s) queued" if deliveries else "")
    return changed


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
    try:
        return change_state(store, record, state, fields=job_facts(job), now=now)
    except StoreUnavailable:
        logger.warning("could not save state task_uuid=%s slurm_job_id=%s: MongoDB unavailable",
                       record["task"]["uuid"], job.job_id)
        return False
