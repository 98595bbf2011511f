"""What users do with tasks after submitting them: list, wait, cancel, resubmit, read
output; and the cluster summary. Every action checks that the key may act for the
task's user."""
from __future__ import annotations

import copy
import logging
import os
import pwd
import re
import stat
import threading
import time
from datetime import datetime, timezone
from typing import Any, Mapping

from . import constants
from .auth import ApiKey, Forbidden
from .errors import SlurmJobFinished, SlurmJobNotFound, SlurmProxyError, TaskNotFound, invalid
from .policy import is_under
from .schemas.task import SubmitSchema
from .services import Services
from .states import PENDING, RUNNING, is_final
from .tasks import record_by_job_id, record_by_uuid, submit_task
from .store import utcnow
from .tracking import record_job_state

logger = logging.getLogger(__name__)


class TaskFinished(SlurmProxyError):
    status = 409
    code = "task_finished"


class OutputUnavailable(SlurmProxyError):
    status = 501
    code = "output_unavailable"


# -- list ------------------------------------------------------------------------
CURSOR = r"^\d{1,13}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def encode_cursor(created_at: datetime, uuid: str) -> str:
    """A position in the listing: the last task's creation time (ms) and uuid. Any
    string of this form is a valid position, so a client may also make one."""
    return f"{int(created_at.timestamp() * 1000)}.{uuid}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if not re.fullmatch(CURSOR, cursor):
        raise invalid({"cursor": ["Not a cursor (use next_cursor)."]})
    millis, _, uuid = cursor.partition(".")
    return datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc), uuid


def list_tasks(services: Services, key: ApiKey, args: Mapping[str, Any]) -> dict[str, Any]:
    usernames = None if "*" in key.users else list(key.users)
    if args.get("username"):
        key.check_user(args["username"])
        usernames = [args["username"]]
    limit = args.get("limit", 50)
    after = decode_cursor(args["cursor"]) if args.get("cursor") else None
    rows = services.store.list_tasks(usernames=usernames, state=args.get("state"),
                                     name=args.get("name"), since=args.get("since"),
                                     until=args.get("until"), after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    tasks = [{"uuid": r["task"]["uuid"], "name": r["task"].get("name"),
              "username": r["task"]["username"], "slurm_job_id": r.get("slurm_job_id"),
              "slurm_job_state": r["slurm_job_state"], "exit_code": r.get("exit_code"),
              "signal": r.get("signal"), "created_at": r["created_at"],
              "updated_at": r.get("updated_at"), "end_time": r.get("end_time")} for r in rows]
    cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["task"]["uuid"]) if more else None
    return {"tasks": tasks, "next_cursor": cursor}


# -- wait ------------------------------------------------------------------------
NOT_READ_WHILE_WAITING = {
    "code": "not_read_while_waiting",
    "message": "A ?wait= answer comes from the stored record, which the poller keeps "
               "current; waiting never asks slurmrestd. GET without ?wait for the live job."}


def wait_for_task(services: Services, record: dict[str, Any], key: ApiKey,
                  seconds: float) -> dict[str, Any]:
    """Long poll: answer as soon as the stored state is final, or when time is up.
    Woken by this process's change feed (``app.watch``): no polling loop, no slurmrestd
    request, and under the gevent worker no thread held."""
    key.check_owner(record)
    from .watch import wait_until_final

    record = wait_until_final(services.feed, services.store, record,
                              min(seconds, services.config["SLURM_PROXY_MAX_WAIT"]))
    return {"monitor": record, "slurm": None, "slurm_error": dict(NOT_READ_WHILE_WAITING)}


# -- cancel ----------------------------------------------------------------------
def cancel_task(services: Services, record: dict[str, Any], key: ApiKey) -> dict[str, Any]:
    uuid, state = record["task"]["uuid"], record["slurm_job_state"]
    key.check_owner(record)
    if is_final(state):
        raise TaskFinished(f"Task {uuid} has already finished ({state}); nothing to cancel.")
    job_id = record.get("slurm_job_id")
    if job_id is None:
        raise TaskFinished(f"Task {uuid} has no Slurm job ({state}); nothing to cancel.")
    slurm = services.slurm.get(services.slurm.name_of(record))
    try:
        slurm.cancel(job_id, user=record["task"]["username"])
    except SlurmJobFinished:
        raise TaskFinished(f"Slurm job {job_id} of task {uuid} has already finished.") from None
    except SlurmJobNotFound:
        raise TaskFinished(f"Slurm no longer knows job {job_id} of task {uuid}.") from None
    services.store.set_fields(uuid, {"cancel_requested_at": utcnow()})
    logger.info("cancel requested task_uuid=%s slurm_job_id=%s", uuid, job_id)
    try:                  # record what Slurm says now; the poller records the final word
        if not record["task"].get("slurm", {}).get("array"):
            record_job_state(services.store, record,
                             slurm.get_job(job_id, user=record["task"]["username"]))
    except SlurmProxyError:
        pass
    current = services.store.get(uuid) or record
    return {"uuid": uuid, "slurm_job_id": job_id, "slurm_job_state": current["slurm_job_state"],
            "cancel_requested": True}


def cancel_by_uuid(services: Services, uuid: str, key: ApiKey) -> dict[str, Any]:
    return cancel_task(services, record_by_uuid(services, uuid), key)


def cancel_by_job_id(services: Services, job_id: int, key: ApiKey,
                     cluster: str | None = None) -> dict[str, Any]:
    return cancel_task(services, record_by_job_id(services, job_id, key, cluster), key)


# -- resubmit --------------------------------------------------------------------

def resubmit_task(services: Services, uuid: str, overrides: Mapping[str, Any],
                  key: ApiKey) -> dict[str, Any]:
    """A new task from an old one's stored plan with ``overrides`` merged over it."""
    old = record_by_uuid(services, uuid)
    key.check_owner(old)
    task = copy.deepcopy(old["task"])
    entry = constants.TASK_METADATA.get(task.get("name"), {})
    if not entry.get("allows_cmd", True):
        task.pop("cmd", None)
        task.pop("params", None)
    task.pop("uuid", None)
    constants.deep_merge(task, overrides)
    if not task.get("uuid"):
        import uuid as uuid_module
        task["uuid"] = str(uuid_module.uuid4())
    loaded = SubmitSchema().load({"task": task})["task"]   # errors name task.* fields
    answer = submit_task(services, loaded, key, resubmitted_from=old["task"]["uuid"])
    services.store.add_resubmission(old["task"]["uuid"], answer["uuid"])
    return {**answer, "resubmitted_from": old["task"]["uuid"]}


# -- output ----------------------------------------------------------------------
def read_output(services: Services, uuid: str, key: ApiKey, stream: str,
                tail: int) -> dict[str, Any]:
    """The last ``tail`` lines of the task's own stdout or stderr file, when the
    operator lets the service read them (SLURM_PROXY_OUTPUT_PREFIXES). Only the task's
    file, only under an allowed prefix after resolving links, only if the task's user
    owns it."""
    record = record_by_uuid(services, uuid)
    user = record["task"]["username"]
    key.check_owner(record)
    prefixes = [p.replace("{username}", user) for p in services.config["SLURM_PROXY_OUTPUT_PREFIXES"]]
    if not prefixes:
        raise OutputUnavailable("This server does not read job output files "
                                "(SLURM_PROXY_OUTPUT_PREFIXES is not set).")
    path = (record.get("outputs") or {}).get(stream)
    if not path:
        raise TaskNotFound(f"Task {uuid} has no {stream} file (it was not submitted here).")
    real = os.path.realpath(path)
    if not any(is_under(real, p) for p in prefixes):
        raise Forbidden(f"The {stream} file of task {uuid} is outside the paths this server reads.")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise TaskNotFound(f"The {stream} file of task {uuid} does not exist (yet).") from None
    except OSError as exc:
        raise OutputUnavailable(f"The {stream} file of task {uuid} cannot be read "
                                f"({exc.strerror}).") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        try:
            owner = pwd.getpwnam(user).pw_uid
        except KeyError:
            owner = None
        if not stat.S_ISREG(info.st_mode) or info.st_uid != owner:
            raise Forbidden(f"The {stream} file of task {uuid} is not a file of user {user}.")
        limit = 1024 * 1024
        fh.seek(max(0, info.st_size - limit))
        data = fh.read(limit)
    lines = data.decode("utf-8", errors="replace").splitlines()[-tail:]
    return {"uuid": uuid, "stream": stream, "path": path, "size": info.st_size,
            "lines": lines, "truncated": info.st_size > limit}


# -- cluster ---------------------------------------------------------------------
class ClusterCache:
    """The cluster summary, computed at most once per ``ttl`` seconds per process."""

    def __init__(self, ttl: float = 5.0):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, dict]] = {}

    def get(self, services: Services, cluster: str | None = None) -> dict[str, Any]:
        cluster = cluster or services.slurm.default
        slurm = services.slurm.get(cluster)
        with self._lock:
            cached = self._values.get(cluster)
            if cached and time.monotonic() - cached[0] < self.ttl:
                return cached[1]
            value = {"cluster": cluster, **cluster_summary(slurm)}
            self._values[cluster] = (time.monotonic(), value)
            return value


NODE_DOWN = frozenset({"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "NOT_RESPONDING"})


def cluster_summary(slurm) -> dict[str, Any]:
    """Per partition: nodes and CPUs idle/allocated/down, pending and running jobs."""
    summary: dict[str, dict[str, Any]] = {}
    for p in slurm.partitions():
        summary[p.name] = {"name": p.name, "state": p.state,
                           "nodes": {"total": 0, "idle": 0, "mixed": 0, "allocated": 0, "down": 0},
                           "cpus": {"total": 0, "allocated": 0, "idle": 0, "down": 0},
                           "jobs": {"pending": 0, "running": 0}}
    for node in slurm.nodes():
        states = node.states
        down = bool(states & NODE_DOWN)
        kind = ("down" if down else "allocated" if "ALLOCATED" in states
                else "mixed" if "MIXED" in states else "idle")
        for name in node.partitions:
            part = summary.get(name)
            if part is None:
                continue
            part["nodes"]["total"] += 1
            part["nodes"][kind] += 1
            part["cpus"]["total"] += node.cpus
            if down:
                part["cpus"]["down"] += node.cpus
            else:
                part["cpus"]["allocated"] += node.alloc_cpus
                part["cpus"]["idle"] += node.cpus - node.alloc_cpus
    for job in slurm.get_jobs():
        part = summary.get(job.partition or "")
        if part is not None and job.state in (PENDING, RUNNING):
            part["jobs"][job.state.lower()] += 1
    return {"partitions": list(summary.values()), "api_version": slurm.api_version,
            "generated_at": utcnow()}
