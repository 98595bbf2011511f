"""What the endpoints do: submit a task, register a job submitted elsewhere, look up.

The submit path never loses anything: the record is saved as SUBMITTING *before*
slurmrestd is called (so a duplicate uuid never reaches Slurm, and a crash leaves a
record), then it becomes PENDING with the job id, or SUBMIT_FAILED with Slurm's
reason, or SUBMIT_UNKNOWN when the submit timed out and the job may exist (its
comment carries the uuid, so it can be found).
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Mapping

from . import constants, notify, policy, states
from .auth import ApiKey, Forbidden
from .batch import build_submission, output_paths
from .errors import (JobAlreadyTracked, invalid, SlurmError, SlurmJobNotFound,
                     SlurmProxyError, SlurmTimeout, StoreUnavailable, TaskNotFound)
from marshmallow import ValidationError

from .schemas.fields import UUID, canonical_uuid
from .services import Services
from .tracking import (change_state, initial_deliveries, is_owners_job, record_job_state,
                       release_job_id)
from .store import utcnow

logger = logging.getLogger(__name__)



def plan_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """The registry entry with the request merged over it, checked against the task
    type's rules (which command it runs) and for complete notification settings."""
    entry = constants.TASK_METADATA[task["name"]]
    errors: dict[str, list[str]] = {}
    if entry["requires_cmd"] and not task.get("cmd"):
        errors["task.cmd"] = [f"Task name {task['name']!r} runs the request's own command: "
                              f"set task.cmd."]
    if not entry["allows_cmd"]:
        for key in ("cmd", "params"):
            if key in task:
                errors[f"task.{key}"] = [f"Not allowed for task name {task['name']!r}, "
                                         f"which runs its own command."]
    if errors:
        raise invalid(errors)
    plan = constants.resolve_task(task)
    missing = notify.missing_params(plan["notification"])
    if missing:
        raise invalid(missing)
    return plan


_UUID_IN_DEPENDENCY = re.compile(UUID)


def resolve_dependency(services: Services, dependency: str, key: ApiKey) -> str:
    """``afterok:<task uuid>`` -> ``afterok:<its job id>``; the key must be allowed to
    see each task named, and each must have a Slurm job."""
    def job_id_of(match: re.Match) -> str:
        record = services.store.get(match.group(0))
        if record is None or record.get("slurm_job_id") is None:
            raise invalid({"task.slurm.dependency": [
                f"Task {match.group(0)} is unknown here or has no Slurm job."]})
        key.check_owner(record)
        return str(record["slurm_job_id"])

    return _UUID_IN_DEPENDENCY.sub(job_id_of, dependency)


def new_record(task: dict[str, Any], *, state: str, source: str,
               job_id: int | None = None) -> dict[str, Any]:
    now = utcnow()
    record = {
        "task": task,
        "slurm_job_id": job_id,
        "slurm_job_state": state,
        "source": source,
        "created_at": now,
        "updated_at": now,
        "history": [{"state": state, "at": now}],
        "error": None,
    }
    if "dirs" in task and "slurm" in task and "output" in task["slurm"]:
        stdout, stderr = output_paths(task)
        record["outputs"] = {"stdout": stdout, "stderr": stderr}
    return record


def submit_task(services: Services, task: Mapping[str, Any], key: ApiKey, *,
                resubmitted_from: str | None = None) -> dict[str, Any]:
    key.check_user(task["username"])
    plan = plan_task(task)
    policy.check_task(plan, services.config)
    plan["cluster"] = pick_cluster(services, plan)
    slurm = services.slurm.get(plan["cluster"])
    if plan["slurm"].get("dependency"):
        plan["slurm"]["dependency_job_ids"] = resolve_dependency(
            services, plan["slurm"]["dependency"], key)
    submission = build_submission(plan)
    uuid, user = plan["uuid"], plan["username"]
    record = new_record(plan, state=states.SUBMITTING, source="submit")
    if resubmitted_from:
        record["resubmitted_from"] = resubmitted_from
    services.store.insert(record)
    started = time.monotonic()
    try:
        job_id = slurm.submit(submission, user=user)
    except SlurmError as exc:
        state = states.SUBMIT_UNKNOWN if isinstance(exc, SlurmTimeout) else states.SUBMIT_FAILED
        _record_failure(services, record, state, exc)
        logger.warning("submit failed task_uuid=%s slurm_job_id=- state=%s: %s",
                       uuid, state, exc.message)
        exc.message = (f"{exc.message} The task was recorded as {state} under uuid {uuid}"
                       + (" and will be reconciled if the job turns up."
                          if state == states.SUBMIT_UNKNOWN else "; nothing was queued."))
        raise
    fields = {"slurm_job_id": job_id, "slurm_api_version": slurm.api_version}
    _save_submitted(services, record, job_id, fields)
    logger.info("submitted task_uuid=%s slurm_job_id=%s user=%s in %.1f ms",
                uuid, job_id, user, (time.monotonic() - started) * 1000)
    return {"uuid": uuid, "slurm_job_id": job_id, "slurm_job_state": states.PENDING,
            "name": plan["name"], "username": user, "cluster": plan["cluster"],
            "links": {"monitor": f"/monitor/task_uuid/{uuid}"}}


def pick_cluster(services: Services, task: Mapping[str, Any]) -> str:
    """The task's cluster, checked against the configured ones (400 naming the field)."""
    name = task.get("cluster") or services.slurm.default
    if name not in services.slurm.names:
        raise invalid({"task.cluster": [f"Unknown cluster {name!r}; known: "
                                        f"{', '.join(services.slurm.names)}."]})
    return name


def _save_submitted(services: Services, record: dict[str, Any], job_id: int,
                    fields: dict) -> None:
    """Record the job id (and queue the PENDING notifications asked for); Slurm has the
    job now, so try hard and never answer an error."""
    uuid = record["task"]["uuid"]
    for attempt in range(3):
        try:
            change_state(services.store, record, states.PENDING, fields=fields)
            return
        except JobAlreadyTracked:
            # Slurm has just given this id to our job: another active task holding it
            # is about an older job (a rebuilt cluster). Retire it, then save ours.
            record = services.store.get(uuid) or {}
            release_job_id(services.store, (record.get("task") or {}).get("cluster"), job_id,
                           keep_uuid=uuid)
        except StoreUnavailable:
            time.sleep(0.2 * (attempt + 1))
    logger.error("task_uuid=%s slurm_job_id=%s queued in Slurm but the record still says "
                 "SUBMITTING: MongoDB unavailable; the job's comment carries the uuid",
                 uuid, job_id)


def _record_failure(services: Services, record: dict[str, Any], state: str,
                    exc: SlurmProxyError) -> None:
    uuid = record["task"]["uuid"]
    error = {"code": exc.code, "message": exc.message}
    if exc.errors.get("slurm_errors"):
        error["slurm_errors"] = exc.errors["slurm_errors"]
    try:
        change_state(services.store, record, state, fields={"error": error})
    except StoreUnavailable:
        logger.error("task_uuid=%s could not record %s: MongoDB unavailable", uuid, state)


def register_monitor(services: Services, monitor: Mapping[str, Any], key: ApiKey) -> dict[str, Any]:
    """Watch a job submitted elsewhere. Only a job of the task's own user (read from
    Slurm, or slurmdb when on): another user's job is 403, an unknown one 404, and a
    job another task already tracks 409."""
    task = dict(monitor["task"])
    key.check_user(task["username"])
    task["cluster"] = pick_cluster(services, task)
    policy.check_user(task["username"], services.config)
    errors = notify.check_targets(task.get("notification") or {}, services.config)
    if errors:
        raise invalid(errors)
    job_id = monitor["slurm_job_id"]
    job = read_job_to_register(services, task["cluster"], job_id)
    if job.user_name != task["username"]:
        logger.warning("refused to monitor slurm_job_id=%s for user %s: the job is another "
                       "user's (key %s)", job_id, task["username"], key.name)
        owner = (f"user {job.user_name!r}" if key.has_role("admin") and job.user_name
                 else "another user")
        raise Forbidden(f"Slurm job {job_id} belongs to {owner}, not to {task['username']!r}: "
                        f"a task may only watch its own user's jobs. Nothing was recorded.")
    refuse_if_tracked(services, task["cluster"], job, key)
    state = monitor.get("slurm_job_state") or states.PENDING
    record = new_record(task, state=state, source="monitor", job_id=job_id)
    initial_deliveries(record)
    try:
        services.store.insert(record)
    except JobAlreadyTracked:                   # another worker registered it just now
        refuse_if_tracked(services, task["cluster"], job, key)
        raise
    logger.info("monitoring task_uuid=%s slurm_job_id=%s state=%s",
                task["uuid"], job_id, state)
    record.pop("_id", None)
    return record


def read_job_to_register(services: Services, cluster: str, job_id: int):
    """The job as Slurm (or slurmdb, when on) knows it, read with the service's own
    identity: the one view in which another user's job is not simply invisible."""
    slurm = services.slurm.get(cluster)
    try:
        return slurm.get_job(job_id)
    except SlurmJobNotFound:
        if not services.config["SLURM_SLURMDB"]:
            raise SlurmJobNotFound(f"Slurm does not know job {job_id} on cluster {cluster}; "
                                   f"nothing was recorded.") from None
    try:
        return slurm.get_db_job(job_id)
    except SlurmJobNotFound:
        raise SlurmJobNotFound(f"Neither Slurm nor slurmdb knows job {job_id} on cluster "
                               f"{cluster}; nothing was recorded.") from None


# A task recorded up to this long before Slurm's submit time of a job is about that job
# (a submit through this service saves its record just before Slurm takes the job;
# this also allows for clocks that differ).
SAME_JOB_SLACK_SECONDS = 300


def refuse_if_tracked(services: Services, cluster: str, job, key: ApiKey) -> None:
    """409 if a task already tracks this job: an active task with its id, or one made
    for it since it was submitted. Active holders that are not the owner's (made before
    ownership was checked) are retired instead of blocking the owner."""
    release_job_id(services.store, cluster, job.job_id, owner=job.user_name)
    for other in services.store.job_holders(job.job_id, cluster):
        same_job = other["active"] or job.submit_time is None or (
            (job.submit_time - other["created_at"]).total_seconds() <= SAME_JOB_SLACK_SECONDS)
        if not same_job or other["username"] != job.user_name:
            continue
        if key.may_act_for(other["username"]):
            raise JobAlreadyTracked(f"Slurm job {job.job_id} is already tracked by task "
                                    f"{other['uuid']}; nothing was recorded.",
                                    errors={"task_uuid": other["uuid"]})
        raise JobAlreadyTracked(f"Slurm job {job.job_id} is already tracked by another task; "
                                f"nothing was recorded.")


def record_by_uuid(services: Services, uuid: str) -> dict[str, Any]:
    """The stored task, or TaskNotFound (also for a string that is no UUID)."""
    try:
        record = services.store.get(canonical_uuid(uuid))
    except ValidationError:
        record = None
    if record is None:
        raise TaskNotFound(f"No task with uuid {uuid!r:.80}.")
    return record


def record_by_job_id(services: Services, job_id: int, key: ApiKey,
                     cluster: str | None = None) -> dict[str, Any]:
    """The task with this job id on ``cluster`` (default: the first) among those the key
    may see: the active one, else the newest. So another user's record, however new,
    never hides yours. 403 if only other users' tasks have it, 404 if none."""
    cluster = cluster or services.slurm.default
    services.slurm.get(cluster)                         # 404 for an unknown cluster
    if not 0 < job_id < 2**32:
        raise TaskNotFound(f"No task record for Slurm job {job_id} on cluster {cluster}.")
    usernames = None if "*" in key.users else list(key.users)
    record = services.store.get_by_job_id(job_id, cluster, usernames=usernames)
    if record is not None:
        return record
    if usernames is not None and services.store.get_by_job_id(job_id, cluster) is not None:
        raise Forbidden(f"API key {key.name!r} may not see the task of Slurm job {job_id}: "
                        f"it belongs to a user the key does not act for.")
    raise TaskNotFound(f"No task record for Slurm job {job_id} on cluster {cluster}.")


def lookup_by_uuid(services: Services, uuid: str, key: ApiKey) -> dict[str, Any]:
    record = record_by_uuid(services, uuid)
    key.check_owner(record)
    return with_live_state(services, record)


def lookup_by_job_id(services: Services, job_id: int, key: ApiKey,
                     cluster: str | None = None) -> dict[str, Any]:
    record = record_by_job_id(services, job_id, key, cluster)
    key.check_owner(record)
    return with_live_state(services, record)


def with_live_state(services: Services, record: dict[str, Any]) -> dict[str, Any]:
    job_id = record.get("slurm_job_id")
    if job_id is None:
        return {"monitor": record, "slurm": None, "slurm_error": {
            "code": "no_job", "message": f"The task has no Slurm job ({record['slurm_job_state']})."}}
    user = record["task"]["username"]
    try:
        # As the task's user, so that Slurm's own PrivateData applies.
        job = services.slurm.get(services.slurm.name_of(record)).get_job(job_id, user=user)
    except SlurmJobNotFound:
        return {"monitor": record, "slurm": None, "slurm_error": {
            "code": "slurm_job_not_found",
            "message": f"slurmctld no longer knows job {job_id} (purged after MinJobAge); "
                       f"the stored record is the last word."}}
    except SlurmError as exc:
        return {"monitor": record, "slurm": None,
                "slurm_error": {"code": exc.code, "message": exc.message}}
    if not is_owners_job(record, job):
        return {"monitor": record, "slurm": None, "slurm_error": {
            "code": "slurm_job_not_owned",
            "message": f"Slurm job {job_id} is not a job of user {user!r} (its id may have "
                       f"been reused); the stored record is the last word."}}
    # An array's state is its elements' together, which the poller records.
    if not record["task"].get("slurm", {}).get("array") and record_job_state(services.store, record, job):
        record = services.store.get(record["task"]["uuid"]) or record
    return {"monitor": record, "slurm": job.to_dict()}
