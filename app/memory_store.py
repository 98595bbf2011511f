"""``MemoryTaskStore``: the embedded default when no MONGODB_URI is set.

The same methods and semantics as ``TaskStore`` (unique uuid, compare-and-set, the
outbox in the task, copies in and out, so callers cannot change stored data by
accident), kept in one process's memory with dict indexes. Records are lost on
restart and are not shared between processes: one gunicorn worker, and a poller in
the same process (``run.py``) only.
"""
from __future__ import annotations

import bisect
import threading
from datetime import datetime, timedelta
from typing import Any, Iterable

from .errors import DuplicateTask, JobAlreadyTracked
from .store import (ACTIVE_PROJECTION, DUE_STATUSES, SUMMARY_PROJECTION, duplicate_message,
                    holder, is_active, job_tracked_message, utcnow)


def _active_job(doc: dict[str, Any]):
    """The (cluster, job id) an active task holds, as the unique index keys it."""
    return _job_key(doc["slurm_job_state"], doc.get("slurm_job_id"), doc["task"].get("cluster"))


def _job_key(state: str, job_id: Any, cluster: str | None):
    if not is_active(state) or not isinstance(job_id, int) or job_id <= 0:
        return None
    return (cluster, job_id)


_LEAVES = frozenset({str, int, float, bool, type(None), datetime})


def _copy(value: Any) -> Any:
    """A deep copy of a stored document (dicts, lists and immutable leaves: str,
    numbers, datetimes), several times cheaper than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: v if type(v) in _LEAVES else _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _LEAVES else _copy(v) for v in value]
    return value


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    return _project(doc, SUMMARY_PROJECTION)


def _project(doc: dict[str, Any], projection=ACTIVE_PROJECTION) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in projection:
        if key == "_id":
            continue
        head, _, tail = key.partition(".")
        if tail:
            if tail in doc.get(head, {}):
                out.setdefault(head, {})[tail] = _copy(doc[head][tail])
        elif head in doc:
            out[head] = _copy(doc[head])
    return out


class MemoryTaskStore:
    is_embedded = True

    def __init__(self):
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, Any]] = {}
        self._by_job: dict[int, list[str]] = {}
        self._active: set[str] = set()
        self._with_outbox: set[str] = set()
        self._beats: dict[str, dict[str, Any]] = {}
        self._leases: dict[str, dict[str, Any]] = {}
        self._changes: list[tuple[datetime, str]] = []     # (updated_at, uuid), in order
        self._active_jobs: dict[tuple, str] = {}     # (cluster, job id) -> uuid
        self._job_of: dict[str, tuple] = {}          # uuid -> (cluster, job id)
        self._listeners: list = []

    def add_listener(self, callback) -> None:
        """Call ``callback(summary)`` after each task is created or changes state: the
        in-process signal ``app.watch`` uses instead of querying (one process only)."""
        with self._lock:
            self._listeners.append(callback)

    def _announce(self, summary: dict[str, Any]) -> None:
        for callback in list(self._listeners):
            callback(summary)

    def ping(self) -> None:
        return None

    def _reindex(self, doc: dict[str, Any]) -> None:
        uuid = doc["task"]["uuid"]
        job_id = doc.get("slurm_job_id")
        if job_id is not None:
            holders = self._by_job.get(job_id)
            if holders is None:
                self._by_job[job_id] = [uuid]
            elif uuid not in holders:
                holders.append(uuid)
        (self._active.add if is_active(doc["slurm_job_state"]) else self._active.discard)(uuid)
        old, new = self._job_of.pop(uuid, None), _active_job(doc)
        if old is not None and self._active_jobs.get(old) == uuid:
            del self._active_jobs[old]
        if new is not None:
            self._active_jobs[new] = uuid
            self._job_of[uuid] = new
        deliveries = doc.get("deliveries")
        due = deliveries and any(d["status"] in DUE_STATUSES for d in deliveries)
        (self._with_outbox.add if due else self._with_outbox.discard)(uuid)

    # -- tasks ---------------------------------------------------------------------
    def insert(self, record: dict[str, Any]) -> None:
        uuid = record["task"]["uuid"]
        with self._lock:
            if uuid in self._docs:
                raise DuplicateTask(duplicate_message(uuid))
            self._check_job_free(record, uuid)
            doc = _copy(record)
            doc.pop("_id", None)
            self._docs[uuid] = doc
            self._reindex(doc)
            self._note_change(uuid, doc.get("updated_at") or doc["created_at"])
            summary = _summary(doc) if self._listeners else None
        if summary is not None:
            self._announce(summary)

    def update_state(self, uuid: str, *, state: str, expected: str | None = None,
                     fields: dict[str, Any] | None = None, note: str | None = None,
                     deliveries: Iterable[dict[str, Any]] = ()) -> bool:
        return self._update_state(utcnow(), uuid, state=state, expected=expected,
                                  fields=fields, note=note, deliveries=deliveries)

    def _update_state(self, now: datetime, uuid: str, *, state: str,
                      expected: str | None = None, fields: dict[str, Any] | None = None,
                      note: str | None = None,
                      deliveries: Iterable[dict[str, Any]] = ()) -> bool:
        with self._lock:
            doc = self._docs.get(uuid)
            if doc is None or (expected is not None and doc["slurm_job_state"] != expected):
                return False
            fields = fields or {}
            job_id = fields.get("slurm_job_id", doc.get("slurm_job_id"))
            key = _job_key(state, job_id, doc["task"].get("cluster"))
            self._check_key_free(key, uuid)
            if fields:
                doc.update(_copy(fields))
            doc["slurm_job_state"] = state
            doc["updated_at"] = now
            self._note_change(uuid, now)
            doc.setdefault("history", []).append(
                {"state": state, "at": now, "note": note} if note else {"state": state, "at": now})
            if deliveries:
                doc.setdefault("deliveries", []).extend(_copy(list(deliveries)))
            self._reindex(doc)
            summary = _summary(doc) if self._listeners else None
        if summary is not None:
            self._announce(summary)
        return True

    def update_states(self, changes: list[dict[str, Any]]) -> list[Any]:
        """Several ``update_state`` calls (each a dict of its arguments) at once, each
        still compare-and-set on its own. Returns for each whether it applied, or the
        exception that stopped it (``JobAlreadyTracked``...); the others still apply."""
        out: list[Any] = []
        now = utcnow()
        with self._lock:
            for change in changes:
                try:
                    out.append(self._update_state(now, **change))
                except Exception as exc:  # noqa: BLE001 - that change's outcome
                    out.append(exc)
        return out

    def set_fields(self, uuid: str, fields: dict[str, Any], *,
                   expected: str | None = None) -> bool:
        with self._lock:
            doc = self._docs.get(uuid)
            if doc is None or (expected is not None and doc["slurm_job_state"] != expected):
                return False
            doc.update(_copy(fields))
            return True

    def get(self, uuid: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs.get(uuid)
            return _copy(doc) if doc is not None else None

    def _check_job_free(self, doc: dict[str, Any], uuid: str) -> None:
        """The unique index of TaskStore: one active task per (cluster, job id)."""
        self._check_key_free(_active_job(doc), uuid)

    def _check_key_free(self, key, uuid: str) -> None:
        if key is not None and self._active_jobs.get(key, uuid) != uuid:
            raise JobAlreadyTracked(job_tracked_message(key[1]))

    def _job_docs(self, job_id: int, cluster: str | None) -> list[dict[str, Any]]:
        return [self._docs[u] for u in self._by_job.get(job_id, ())
                if self._docs[u].get("slurm_job_id") == job_id
                and (cluster is None or self._docs[u]["task"].get("cluster") == cluster)]

    def get_by_job_id(self, job_id: int, cluster: str | None = None, *,
                      usernames=None) -> dict[str, Any] | None:
        with self._lock:
            docs = [d for d in self._job_docs(job_id, cluster)
                    if usernames is None or d["task"]["username"] in usernames]
            if not docs:
                return None
            return _copy(max(docs, key=lambda d: (is_active(d["slurm_job_state"]),
                                                          d["created_at"])))

    def job_holders(self, job_id: int, cluster: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            docs = sorted(self._job_docs(job_id, cluster), key=lambda d: d["created_at"],
                          reverse=True)
            return [holder(d) for d in docs]

    def list_tasks(self, *, usernames=None, state=None, name=None, since=None, until=None,
                   after=None, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            docs = [d for d in self._docs.values()
                    if (usernames is None or d["task"]["username"] in usernames)
                    and (not state or d["slurm_job_state"] == state)
                    and (not name or d["task"].get("name") == name)
                    and (not since or d["created_at"] >= since)
                    and (not until or d["created_at"] < until)
                    and (not after or (d["created_at"], d["task"]["uuid"]) < after)]
            docs.sort(key=lambda d: (d["created_at"], d["task"]["uuid"]), reverse=True)
            return [_summary(d) for d in docs[:limit]]

    def changes_since(self, since: datetime, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            docs = sorted((d for d in self._docs.values() if d.get("updated_at") and d["updated_at"] > since),
                          key=lambda d: d["updated_at"])
            return [_summary(d) for d in docs[:limit]]

    def add_resubmission(self, uuid: str, new_uuid: str) -> None:
        with self._lock:
            if uuid in self._docs:
                self._docs[uuid].setdefault("resubmissions", []).append(new_uuid)

    def active_tasks(self, uuids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if uuids is None:
                return [_project(self._docs[u]) for u in self._active]
            return [_project(self._docs[u]) for u in dict.fromkeys(uuids) if u in self._active]

    def _note_change(self, uuid: str, at: datetime) -> None:
        if self._changes and at < self._changes[-1][0]:
            at = self._changes[-1][0]              # keep the log sorted
        self._changes.append((at, uuid))
        if len(self._changes) > 2 * len(self._docs) + 1000:     # drop superseded entries
            latest = {u: a for a, u in self._changes}
            self._changes = sorted((a, u) for u, a in latest.items())

    def changed_since(self, since: datetime) -> list[dict[str, Any]]:
        with self._lock:
            start = bisect.bisect_left(self._changes, (since, ""))
            uuids = dict.fromkeys(u for _, u in self._changes[start:])
            docs, active = self._docs, self._active
            return [{"task": {"uuid": u}, "slurm_job_id": docs[u].get("slurm_job_id"),
                     "slurm_job_state": docs[u]["slurm_job_state"], "active": u in active}
                    for u in uuids]

    # -- outbox --------------------------------------------------------------------
    def due_deliveries(self, now: datetime, limit: int = 100) -> list[tuple[str, dict]]:
        out = []
        with self._lock:
            for uuid in list(self._with_outbox)[:limit]:
                for item in self._docs[uuid].get("deliveries", ()):
                    if item["status"] in DUE_STATUSES and item["next_at"] <= now:
                        out.append((uuid, _copy(item)))
        return out

    def _delivery(self, uuid: str, delivery_id: str) -> dict[str, Any] | None:
        doc = self._docs.get(uuid)
        for item in (doc or {}).get("deliveries", ()):
            if item["id"] == delivery_id:
                return item
        return None

    def claim_delivery(self, uuid: str, delivery: dict[str, Any], *,
                       lease_until: datetime) -> bool:
        with self._lock:
            item = self._delivery(uuid, delivery["id"])
            if (item is None or item["status"] != delivery["status"]
                    or item["attempts"] != delivery["attempts"]):
                return False
            item.update(status="sending", next_at=lease_until, attempts=item["attempts"] + 1)
            return True

    def finish_delivery(self, uuid: str, delivery_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            item = self._delivery(uuid, delivery_id)
            if item is not None:
                item.update(_copy(fields))
                self._reindex(self._docs[uuid])

    # -- operations ----------------------------------------------------------------
    def beat(self, name: str, at: datetime, info: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._beats[name] = {"at": at, **_copy(info or {})}

    def last_beat(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return _copy(self._beats.get(name))

    def take_lease(self, name: str, holder: str, now: datetime, ttl: float) -> bool:
        with self._lock:
            lease = self._leases.get(name)
            if lease is not None and lease["holder"] != holder and lease["until"] >= now:
                return False
            since = lease["since"] if lease is not None and lease["holder"] == holder else now
            self._leases[name] = {"holder": holder, "until": now + timedelta(seconds=ttl),
                                  "renewed_at": now, "since": since}
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self._lock:
            if (self._leases.get(name) or {}).get("holder") == holder:
                del self._leases[name]

    def lease(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return _copy(self._leases.get(name))

    def count_active_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for uuid in self._active:
                state = self._docs[uuid]["slurm_job_state"]
                counts[state] = counts.get(state, 0) + 1
        return counts

    def count_outbox(self) -> int:
        with self._lock:
            return sum(1 for uuid in self._with_outbox for d in self._docs[uuid]["deliveries"]
                       if d["status"] in DUE_STATUSES)
