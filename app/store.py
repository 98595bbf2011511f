"""``TaskStore``: the only module that touches pymongo.

One document per task, keyed by ``task.uuid`` (unique index, so two racing submits of
the same uuid cannot both get in) and indexed by ``slurm_job_id``. pymongo errors
leave as ``StoreUnavailable``/``DuplicateTask``.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import threading
from datetime import datetime, timezone
from typing import Any, Iterator

import pymongo
from pymongo.errors import DuplicateKeyError, PyMongoError

from .errors import DuplicateTask, StoreUnavailable

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    # BSON keeps milliseconds; trimming here keeps what we return equal to what we store.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class TaskStore:
    def __init__(self, collection, *, serialize: bool = False):
        """``serialize``: take a lock around every operation (mongomock is not thread-safe)."""
        self.collection = collection
        self._lock = threading.RLock() if serialize else None
        self._indexed = False

    @classmethod
    def from_config(cls, config) -> "TaskStore":
        uri = config.get("MONGODB_URI")
        if uri:
            client = pymongo.MongoClient(uri, connect=False, tz_aware=True,
                                         serverSelectionTimeoutMS=config["MONGODB_TIMEOUT_MS"],
                                         connectTimeoutMS=config["MONGODB_TIMEOUT_MS"],
                                         socketTimeoutMS=max(10_000, config["MONGODB_TIMEOUT_MS"]))
            return cls(client[config["MONGODB_DB"]][config["MONGODB_COLLECTION"]])
        return MemoryTaskStore()

    @classmethod
    def in_memory(cls, db: str = "slurm_proxy", collection: str = "tasks") -> "TaskStore":
        """pymongo's code path on mongomock (tests). Slow past a few thousand tasks:
        mongomock scans every document on each query."""
        import mongomock  # tests only

        client = mongomock.MongoClient(tz_aware=True)
        return cls(client[db][collection], serialize=True)

    @property
    def is_embedded(self) -> bool:
        return False

    @contextlib.contextmanager
    def _op(self, what: str) -> Iterator[None]:
        lock = self._lock or contextlib.nullcontext()
        try:
            with lock:
                if not self._indexed:
                    self._ensure_indexes()
                yield
        except DuplicateKeyError:
            raise
        except PyMongoError as exc:
            raise StoreUnavailable(
                f"MongoDB is not available ({exc.__class__.__name__}) while trying to "
                f"{what}.") from None

    def _ensure_indexes(self) -> None:
        self.collection.create_index([("task.uuid", pymongo.ASCENDING)], unique=True,
                                     name="task_uuid_unique")
        self.collection.create_index([("slurm_job_id", pymongo.ASCENDING)], name="slurm_job_id")
        self.collection.create_index([("slurm_job_state", pymongo.ASCENDING)],
                                     name="slurm_job_state")
        self._indexed = True

    def ping(self) -> None:
        with self._op("ping"):
            self.collection.database.command("ping")

    # -- writes --------------------------------------------------------------------
    def insert(self, record: dict[str, Any]) -> None:
        doc = dict(record)
        try:
            with self._op("save the task"):
                self.collection.insert_one(doc)
        except DuplicateKeyError:
            raise DuplicateTask(
                f"A task with uuid {record['task']['uuid']} already exists; "
                f"use a new uuid (nothing was submitted).") from None

    def update_state(self, uuid: str, *, state: str, expected: str | None = None,
                     fields: dict[str, Any] | None = None, note: str | None = None) -> bool:
        """Set the state (and other fields), appending a history entry.

        With ``expected``, only if the stored state still is ``expected``
        (compare-and-set); returns whether the document changed.
        """
        now = utcnow()
        entry = {"state": state, "at": now}
        if note:
            entry["note"] = note
        query: dict[str, Any] = {"task.uuid": uuid}
        if expected is not None:
            query["slurm_job_state"] = expected
        update = {"$set": {"slurm_job_state": state, "updated_at": now, **(fields or {})},
                  "$push": {"history": entry}}
        with self._op("update the task"):
            result = self.collection.update_one(query, update)
        return result.modified_count == 1

    # -- reads ---------------------------------------------------------------------
    def get(self, uuid: str) -> dict[str, Any] | None:
        with self._op("read the task"):
            return self.collection.find_one({"task.uuid": uuid}, {"_id": False})

    def get_by_job_id(self, job_id: int) -> dict[str, Any] | None:
        """The newest task for a Slurm job id (ids repeat if a cluster is rebuilt)."""
        with self._op("read the task"):
            docs = list(self.collection.find({"slurm_job_id": job_id}, {"_id": False})
                        .sort("created_at", pymongo.DESCENDING).limit(1))
        return docs[0] if docs else None


class MemoryTaskStore:
    """The embedded default when no MONGODB_URI is set: the same interface and
    semantics as TaskStore (unique uuid, compare-and-set, copies in and out), in one
    process's memory with dict indexes. Records are lost on restart."""

    is_embedded = True

    def __init__(self):
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, Any]] = {}
        self._by_job: dict[int, list[str]] = {}

    def ping(self) -> None:
        return None

    def insert(self, record: dict[str, Any]) -> None:
        uuid = record["task"]["uuid"]
        with self._lock:
            if uuid in self._docs:
                raise DuplicateTask(
                    f"A task with uuid {uuid} already exists; use a new uuid "
                    f"(nothing was submitted).")
            doc = copy.deepcopy(record)
            doc.pop("_id", None)
            self._docs[uuid] = doc
            self._index_job(doc)

    def _index_job(self, doc: dict[str, Any]) -> None:
        job_id = doc.get("slurm_job_id")
        if job_id is not None:
            uuids = self._by_job.setdefault(job_id, [])
            if doc["task"]["uuid"] not in uuids:
                uuids.append(doc["task"]["uuid"])

    def update_state(self, uuid: str, *, state: str, expected: str | None = None,
                     fields: dict[str, Any] | None = None, note: str | None = None) -> bool:
        now = utcnow()
        with self._lock:
            doc = self._docs.get(uuid)
            if doc is None or (expected is not None and doc["slurm_job_state"] != expected):
                return False
            entry = {"state": state, "at": now}
            if note:
                entry["note"] = note
            doc.update(copy.deepcopy(fields or {}))
            doc["slurm_job_state"] = state
            doc["updated_at"] = now
            doc.setdefault("history", []).append(entry)
            self._index_job(doc)
            return True

    def get(self, uuid: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs.get(uuid)
            return copy.deepcopy(doc) if doc is not None else None

    def get_by_job_id(self, job_id: int) -> dict[str, Any] | None:
        with self._lock:
            docs = [self._docs[u] for u in self._by_job.get(job_id, ())
                    if self._docs[u].get("slurm_job_id") == job_id]
            if not docs:
                return None
            return copy.deepcopy(max(docs, key=lambda d: d["created_at"]))
