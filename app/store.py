"""``TaskStore`` and ``MongoKeyStore``: the only module that touches pymongo.

``mongo_client`` makes the process's one ``MongoClient`` (``services.build`` calls it
once and hands it to the task store, the key store and, through ``limit_storage``,
the rate limits).

One document per task, keyed by ``task.uuid`` (unique index, so two racing submits of
the same uuid cannot both get in) and indexed by ``slurm_job_id``. A task's
notification outbox lives *in* its document (``deliveries``), so a state change and
the deliveries it causes are saved by one atomic update: no crash can keep one without
the other. pymongo errors leave as ``StoreUnavailable``/``DuplicateTask``.

``app.memory_store.MemoryTaskStore`` is the embedded twin with the same methods.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

import pymongo
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from .states import FINAL_STATES
from .errors import DuplicateTask, JobAlreadyTracked, StoreUnavailable

logger = logging.getLogger(__name__)

# What the poller needs of an active task (not its history or outbox).
ACTIVE_PROJECTION = {"_id": False, "task.uuid": True, "task.username": True,
                     "task.notification": True, "task.slurm": True, "task.cluster": True, "slurm_job_id": True,
                     "slurm_job_state": True, "created_at": True, "updated_at": True,
                     "missing_since": True, "notified_states": True}
# What the poller reads of each task changed since its last cycle: enough to tell its
# own writes (and tasks it no longer watches) from changes made elsewhere, which it
# then reads in full (``active_tasks(uuids)``).
CHANGE_PROJECTION = {"_id": False, "task.uuid": True, "slurm_job_id": True,
                     "slurm_job_state": True, "active": True}
DUE_STATUSES = ("pending", "sending")
UUIDS_PER_QUERY = 5000        # task uuids named in one query (about 200 kB of BSON)
# What a task listing shows of each task.
SUMMARY_FIELDS = ("task.uuid", "task.name", "task.username", "slurm_job_id", "slurm_job_state",
                  "exit_code", "signal", "created_at", "updated_at", "end_time")
SUMMARY_PROJECTION = {"_id": False, **{f: True for f in SUMMARY_FIELDS}}     # "sending" is due again once its lease ran out


def utcnow() -> datetime:
    # BSON keeps milliseconds; trimming here keeps what we return equal to what we store.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def is_active(state: str) -> bool:
    return state not in FINAL_STATES


def duplicate_message(uuid: str) -> str:
    return f"A task with uuid {uuid} already exists; use a new uuid (nothing was submitted)."


def job_tracked_message(job_id: int) -> str:
    return f"Slurm job {job_id} is already tracked by an active task on this cluster."


# At most one *active* task per Slurm job id per cluster (job ids repeat only when a
# cluster is rebuilt, and then the older task is no longer active).
ACTIVE_JOB_INDEX = dict(name="active_job_unique", unique=True,
                        partialFilterExpression={"active": True, "slurm_job_id": {"$gt": 0}})
HOLDER_PROJECTION = {"_id": False, "task.uuid": True, "task.username": True,
                     "slurm_job_state": True, "created_at": True, "active": True}


def holder(doc: dict[str, Any]) -> dict[str, Any]:
    """What a job-id conflict check needs to know of a task holding that job id."""
    return {"uuid": doc["task"]["uuid"], "username": doc["task"].get("username"),
            "state": doc["slurm_job_state"], "created_at": doc["created_at"],
            "active": bool(doc.get("active", is_active(doc["slurm_job_state"])))}


def mongo_client(config) -> pymongo.MongoClient:
    """A client for MONGODB_URI that connects on first use (``connect=False``), so it
    may be made before a forking server forks; every timeout bounded."""
    timeout = config["MONGODB_TIMEOUT_MS"]
    return pymongo.MongoClient(config["MONGODB_URI"], connect=False, tz_aware=True,
                               serverSelectionTimeoutMS=timeout,
                               connectTimeoutMS=timeout,
                               socketTimeoutMS=max(10_000, timeout))


def limit_storage(client: pymongo.MongoClient):
    """``limits``' MongoDB storage (its database ``limits``, as from a URI) counting
    through ``client``: the storage makes a client of its own from a URI, and closes
    its client when it goes."""
    from limits.storage import MongoDBStorage

    class SharedClientStorage(MongoDBStorage):
        def _init_mongo_client(self, uri, **options):
            return client

        def __del__(self):
            pass                       # the client is the process's, not the storage's

    return SharedClientStorage("mongodb://shared")


class _MongomockCollection:
    """A mongomock collection with pymongo 4's ``bulk_write`` of ``UpdateOne``s
    (mongomock's own bulk builder refuses the arguments pymongo passes it now): each
    update applied in turn, the outcome reported as MongoDB reports it (the modified
    count, or ``BulkWriteError`` with each refused update's index and code). Tests only."""

    def __init__(self, collection):
        self._collection = collection

    def __getattr__(self, name):
        return getattr(self._collection, name)

    def bulk_write(self, requests, ordered: bool = True):
        from types import SimpleNamespace

        modified, errors = 0, []
        for i, op in enumerate(requests):
            try:
                modified += self._collection.update_one(op._filter, op._doc).modified_count
            except DuplicateKeyError as exc:
                errors.append({"index": i, "code": 11000, "errmsg": str(exc)})
                if ordered:
                    break
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nModified": modified,
                                  "writeConcernErrors": [], "nInserted": 0, "nUpserted": 0,
                                  "nMatched": modified, "nRemoved": 0, "upserted": []})
        return SimpleNamespace(modified_count=modified)


class TaskStore:
    is_embedded = False

    def __init__(self, collection, *, serialize: bool = False):
        """``serialize``: take a lock around every operation (mongomock is not thread-safe)."""
        self.collection = collection
        self._lock = threading.RLock() if serialize else None
        self._indexed = False

    @classmethod
    def from_config(cls, config, client=None):
        """The store MONGODB_URI names, on ``client`` (the process's one client), or
        the embedded in-memory store when it is not set."""
        if not config.get("MONGODB_URI"):
            from .memory_store import MemoryTaskStore
            return MemoryTaskStore()
        client = client if client is not None else mongo_client(config)
        return cls(client[config["MONGODB_DB"]][config["MONGODB_COLLECTION"]])

    @classmethod
    def in_memory(cls, db: str = "slurm_proxy", collection: str = "tasks") -> "TaskStore":
        """pymongo's code path on mongomock, for tests (mongomock scans every document)."""
        import mongomock

        return cls(_MongomockCollection(mongomock.MongoClient(tz_aware=True)[db][collection]),
                   serialize=True)

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
        c = self.collection
        c.create_index([("task.uuid", pymongo.ASCENDING)], unique=True, name="task_uuid_unique")
        c.create_index([("slurm_job_id", pymongo.ASCENDING)], name="slurm_job_id")
        c.create_index([("active", pymongo.ASCENDING)], name="active")
        c.create_index([("task.username", pymongo.ASCENDING), ("created_at", pymongo.DESCENDING)],
                       name="username_created")
        c.create_index([("created_at", pymongo.DESCENDING), ("task.uuid", pymongo.DESCENDING)],
                       name="created")
        c.create_index([("updated_at", pymongo.ASCENDING)], name="updated_at")
        c.create_index([("deliveries.status", pymongo.ASCENDING),
                        ("deliveries.next_at", pymongo.ASCENDING)], name="deliveries_due")
        try:
            c.create_index([("task.cluster", pymongo.ASCENDING), ("slurm_job_id", pymongo.ASCENDING)],
                           **ACTIVE_JOB_INDEX)
        except OperationFailure as exc:
            # Records from before this index may hold a job id twice; the service still
            # checks before it inserts, and the poller retires the stale holders.
            logger.error("could not create the index %s (%s): two active tasks share a "
                         "Slurm job id; they are retired as the poller finds them",
                         ACTIVE_JOB_INDEX["name"], exc.code)
        self._indexed = True

    def ping(self) -> None:
        with self._op("ping"):
            self.collection.database.command("ping")

    # -- tasks ---------------------------------------------------------------------
    def insert(self, record: dict[str, Any]) -> None:
        doc = {**record, "active": is_active(record["slurm_job_state"])}
        try:
            with self._op("save the task"):
                self.collection.insert_one(doc)
        except DuplicateKeyError:
            record.pop("_id", None)
            # Which unique index refused it? (mongomock's error does not say.)
            if self.get(record["task"]["uuid"]) is not None:
                raise DuplicateTask(duplicate_message(record["task"]["uuid"])) from None
            raise JobAlreadyTracked(job_tracked_message(record["slurm_job_id"])) from None
        record.pop("_id", None)

    @staticmethod
    def _state_update(now: datetime, uuid: str, *, state: str, expected: str | None = None,
                      fields: dict[str, Any] | None = None, note: str | None = None,
                      deliveries: Iterable[dict[str, Any]] = ()) -> tuple[dict, dict]:
        """The query and update of ``update_state``."""
        entry = {"state": state, "at": now, **({"note": note} if note else {})}
        query: dict[str, Any] = {"task.uuid": uuid}
        if expected is not None:
            query["slurm_job_state"] = expected
        push: dict[str, Any] = {"history": entry}
        deliveries = list(deliveries)
        if deliveries:
            push["deliveries"] = {"$each": deliveries}
        return query, {"$set": {"slurm_job_state": state, "active": is_active(state),
                                "updated_at": now, **(fields or {})}, "$push": push}

    def update_state(self, uuid: str, *, state: str, expected: str | None = None,
                     fields: dict[str, Any] | None = None, note: str | None = None,
                     deliveries: Iterable[dict[str, Any]] = ()) -> bool:
        """Set the state (with other fields and new outbox entries), appending a
        history entry. With ``expected``, only if the stored state still is
        ``expected`` (compare-and-set). Returns whether the task changed."""
        query, update = self._state_update(utcnow(), uuid, state=state, expected=expected,
                                           fields=fields, note=note, deliveries=deliveries)
        try:
            with self._op("update the task"):
                return self.collection.update_one(query, update).modified_count == 1
        except DuplicateKeyError:
            # Another active task holds the job id this update would give this one.
            raise JobAlreadyTracked(job_tracked_message((fields or {}).get("slurm_job_id"))) from None

    def update_states(self, changes: list[dict[str, Any]]) -> list[Any]:
        """Several ``update_state`` calls (each a dict of its arguments) in one round
        trip (an unordered ``bulk_write``), each still its own compare-and-set, so
        that of two pollers only one records a change. Returns for each whether it
        applied, or the exception that stopped it (``JobAlreadyTracked`` for a job id
        another active task holds, ``StoreUnavailable``); the others still apply."""
        if not changes:
            return []
        now = utcnow()
        ops = [pymongo.UpdateOne(*self._state_update(now, **c)) for c in changes]
        out: list[Any] = [None] * len(changes)
        with self._op("update the tasks"):
            try:
                modified = self.collection.bulk_write(ops, ordered=False).modified_count
            except BulkWriteError as exc:
                modified = exc.details.get("nModified", 0)
                for error in exc.details.get("writeErrors", []):
                    i, code = error["index"], error.get("code")
                    out[i] = JobAlreadyTracked(job_tracked_message(
                        (changes[i].get("fields") or {}).get("slurm_job_id"))) if code == 11000 \
                        else StoreUnavailable(f"MongoDB refused the update ({code}).")
            pending = [i for i, o in enumerate(out) if o is None]
            if modified == len(pending):
                for i in pending:
                    out[i] = True
            else:        # some compare-and-set found another state: which ones?
                wanted = {changes[i]["uuid"]: i for i in pending}
                for i in pending:
                    out[i] = False
                for doc in self.collection.find(
                        {"task.uuid": {"$in": list(wanted)}, "updated_at": now},
                        {"_id": False, "task.uuid": True, "slurm_job_state": True}):
                    i = wanted[doc["task"]["uuid"]]
                    out[i] = doc["slurm_job_state"] == changes[i]["state"]
        return out

    def set_fields(self, uuid: str, fields: dict[str, Any], *,
                   expected: str | None = None) -> bool:
        query: dict[str, Any] = {"task.uuid": uuid}
        if expected is not None:
            query["slurm_job_state"] = expected
        with self._op("update the task"):
            return self.collection.update_one(query, {"$set": fields}).modified_count == 1

    def get(self, uuid: str) -> dict[str, Any] | None:
        with self._op("read the task"):
            return self.collection.find_one({"task.uuid": uuid}, {"_id": False, "active": False})

    def get_by_job_id(self, job_id: int, cluster: str | None = None, *,
                      usernames: Iterable[str] | None = None) -> dict[str, Any] | None:
        """The task for a Slurm job id on a cluster: the active one, else the newest (ids
        repeat if a cluster is rebuilt, and between clusters). With ``usernames``, only
        among those users' tasks, so another user's record can never hide yours."""
        query: dict[str, Any] = {"slurm_job_id": job_id}
        if cluster is not None:
            query["task.cluster"] = cluster
        if usernames is not None:
            query["task.username"] = {"$in": list(usernames)}
        with self._op("read the task"):
            docs = list(self.collection.find(query,
                                             {"_id": False, "active": False})
                        .sort([("active", pymongo.DESCENDING), ("created_at", pymongo.DESCENDING)])
                        .limit(1))
        return docs[0] if docs else None

    def job_holders(self, job_id: int, cluster: str | None = None) -> list[dict[str, Any]]:
        """Every task recorded with this job id on this cluster, newest first:
        ``{uuid, username, state, created_at, active}`` each."""
        query: dict[str, Any] = {"slurm_job_id": job_id}
        if cluster is not None:
            query["task.cluster"] = cluster
        with self._op("read the task"):
            docs = list(self.collection.find(query, HOLDER_PROJECTION)
                        .sort("created_at", pymongo.DESCENDING).limit(100))
        return [holder(d) for d in docs]

    def list_tasks(self, *, usernames: list[str] | None = None, state: str | None = None,
                   name: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, after: tuple[datetime, str] | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
        """Tasks newest first (then by uuid), after the cursor ``(created_at, uuid)``."""
        clauses: list[dict[str, Any]] = []
        if usernames is not None:
            clauses.append({"task.username": {"$in": list(usernames)}})
        if state:
            clauses.append({"slurm_job_state": state})
        if name:
            clauses.append({"task.name": name})
        if since:
            clauses.append({"created_at": {"$gte": since}})
        if until:
            clauses.append({"created_at": {"$lt": until}})
        if after:
            clauses.append({"$or": [{"created_at": {"$lt": after[0]}},
                                    {"created_at": after[0], "task.uuid": {"$lt": after[1]}}]})
        query = {"$and": clauses} if clauses else {}
        with self._op("list tasks"):
            return list(self.collection.find(query, SUMMARY_PROJECTION)
                        .sort([("created_at", pymongo.DESCENDING), ("task.uuid", pymongo.DESCENDING)])
                        .limit(limit))

    def changes_since(self, since: datetime, limit: int = 1000) -> list[dict[str, Any]]:
        """Summaries of the tasks created or changed after ``since`` (by ``updated_at``,
        indexed), oldest change first: what the change feed (``app.watch``) asks for."""
        with self._op("read recent changes"):
            return list(self.collection.find({"updated_at": {"$gt": since}}, SUMMARY_PROJECTION)
                        .sort("updated_at", pymongo.ASCENDING).limit(limit))

    def add_resubmission(self, uuid: str, new_uuid: str) -> None:
        with self._op("link the resubmission"):
            self.collection.update_one({"task.uuid": uuid}, {"$push": {"resubmissions": new_uuid}})

    def active_tasks(self, uuids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every task whose state is not final (or those of ``uuids`` that are not),
        with the fields the poller needs."""
        if uuids is None:
            with self._op("list active tasks"):
                return list(self.collection.find({"active": True}, ACTIVE_PROJECTION))
        uuids, out = list(uuids), []
        with self._op("read active tasks"):
            for i in range(0, len(uuids), UUIDS_PER_QUERY):
                out += self.collection.find({"active": True,
                                             "task.uuid": {"$in": uuids[i:i + UUIDS_PER_QUERY]}},
                                            ACTIVE_PROJECTION)
        return out

    def changed_since(self, since: datetime) -> list[dict[str, Any]]:
        """Tasks inserted or whose state changed at or after ``since`` (active or not),
        each only as its uuid, job id, state and ``active`` (``CHANGE_PROJECTION``): an
        indexed range query, so a poller learns of new tasks and of changes made
        elsewhere without reading the others, nor its own writes again in full."""
        with self._op("list changed tasks"):
            return list(self.collection.find({"updated_at": {"$gte": since}}, CHANGE_PROJECTION))

    # -- outbox --------------------------------------------------------------------
    def due_deliveries(self, now: datetime, limit: int = 100) -> list[tuple[str, dict]]:
        """(task uuid, delivery) pairs due at ``now``: pending, or sending with an
        expired lease (its sender died)."""
        query = {"deliveries": {"$elemMatch": {"status": {"$in": list(DUE_STATUSES)},
                                               "next_at": {"$lte": now}}}}
        with self._op("read the outbox"):
            docs = list(self.collection.find(query, {"_id": False, "task.uuid": True,
                                                     "deliveries": True}).limit(limit))
        return [(d["task"]["uuid"], item) for d in docs for item in d["deliveries"]
                if item["status"] in DUE_STATUSES and item["next_at"] <= now]

    def claim_delivery(self, uuid: str, delivery: dict[str, Any], *,
                       lease_until: datetime) -> bool:
        """Take a due delivery for sending (compare-and-set on status and attempts)."""
        query = {"task.uuid": uuid, "deliveries": {"$elemMatch": {
            "id": delivery["id"], "status": delivery["status"],
            "attempts": delivery["attempts"]}}}
        update = {"$set": {"deliveries.$.status": "sending",
                           "deliveries.$.next_at": lease_until,
                           "deliveries.$.attempts": delivery["attempts"] + 1}}
        with self._op("claim a delivery"):
            return self.collection.update_one(query, update).modified_count == 1

    def finish_delivery(self, uuid: str, delivery_id: str, fields: dict[str, Any]) -> None:
        query = {"task.uuid": uuid, "deliveries.id": delivery_id}
        update = {"$set": {f"deliveries.$.{k}": v for k, v in fields.items()}}
        with self._op("record a delivery"):
            self.collection.update_one(query, update)

    # -- operations ----------------------------------------------------------------
    def beat(self, name: str, at: datetime, info: dict[str, Any] | None = None) -> None:
        """Record that a background program (the poller) is alive."""
        with self._op("record a heartbeat"):
            self.collection.database["heartbeats"].update_one(
                {"_id": name}, {"$set": {"at": at, **(info or {})}}, upsert=True)

    def last_beat(self, name: str) -> dict[str, Any] | None:
        with self._op("read a heartbeat"):
            return self.collection.database["heartbeats"].find_one({"_id": name}, {"_id": False})

    def take_lease(self, name: str, holder: str, now: datetime, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``now + ttl`` if it is
        free, expired or already ``holder``'s. Returns whether ``holder`` holds it."""
        leases = self.collection.database["leases"]
        until = now + timedelta(seconds=ttl)
        query = {"_id": name, "$or": [{"holder": holder}, {"until": {"$lt": now}}]}
        update = {"$set": {"holder": holder, "until": until, "renewed_at": now},
                  "$setOnInsert": {"since": now}}
        try:
            with self._op("take a lease"):
                doc = leases.find_one(query, {"holder": True})
                if doc is not None and doc["holder"] != holder:
                    update["$set"]["since"] = now
                    update.pop("$setOnInsert")
                leases.update_one(query, update, upsert=True)
            return True
        except DuplicateKeyError:
            return False                 # another holder's lease is still running

    def release_lease(self, name: str, holder: str) -> None:
        with self._op("release a lease"):
            self.collection.database["leases"].delete_one({"_id": name, "holder": holder})

    def lease(self, name: str) -> dict[str, Any] | None:
        with self._op("read a lease"):
            return self.collection.database["leases"].find_one({"_id": name}, {"_id": False})

    def count_active_by_state(self) -> dict[str, int]:
        pipeline = [{"$match": {"active": True}},
                    {"$group": {"_id": "$slurm_job_state", "n": {"$sum": 1}}}]
        with self._op("count tasks"):
            return {d["_id"]: d["n"] for d in self.collection.aggregate(pipeline)}

    def count_outbox(self) -> int:
        """Deliveries not yet sent or given up."""
        pipeline = [{"$match": {"deliveries.status": {"$in": list(DUE_STATUSES)}}},
                    {"$unwind": "$deliveries"},
                    {"$match": {"deliveries.status": {"$in": list(DUE_STATUSES)}}},
                    {"$count": "n"}]
        with self._op("count the outbox"):
            return next(iter(self.collection.aggregate(pipeline)), {"n": 0})["n"]


class MongoKeyStore:
    """API keys in MongoDB (collection ``api_keys``), by id; only their hashes."""

    def __init__(self, collection):
        self.collection = collection
        self._indexed = False

    def _ready(self):
        if not self._indexed:
            self.collection.create_index("id", unique=True, name="key_id_unique")
            self._indexed = True
        return self.collection

    def get(self, key_id: str) -> dict | None:
        try:
            return self._ready().find_one({"id": key_id}, {"_id": False})
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB is not available ({exc.__class__.__name__}) "
                                   f"while checking the API key.") from None

    def add(self, record: dict) -> None:
        self._ready().insert_one(dict(record))

    def list(self) -> list[dict]:
        return list(self._ready().find({}, {"_id": False}))

    def revoke(self, key_id: str) -> bool:
        result = self._ready().update_one({"id": key_id, "revoked_at": None},
                                          {"$set": {"revoked_at": utcnow()}})
        return result.modified_count == 1
