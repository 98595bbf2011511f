"""A test-only MongoDB wire server, so that several processes share one store in a test.

mockupdb (MongoDB's own wire-protocol test library) answers the handshake with a
``maxWireVersion`` pymongo 4 accepts and routes every command the service sends to one
shared mongomock database (DESIGN.md §7). It is a test double, not a database: it
lives under tests/ and is never offered as a store.
"""
from __future__ import annotations

import datetime
import threading
from typing import Any

import mongomock
from mockupdb import MockupDB
from pymongo.errors import DuplicateKeyError

HELLO = {"ismaster": True, "isWritablePrimary": True, "helloOk": True,
         "minWireVersion": 0, "maxWireVersion": 17, "maxBsonObjectSize": 16 * 1024 * 1024,
         "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000, "connectionId": 1}


class MongoWireDouble:
    def __init__(self):
        self.client = mongomock.MongoClient()
        self._lock = threading.RLock()
        self.server = MockupDB()
        self.server.autoresponds(self._handle)
        self.uri = ""

    def start(self) -> str:
        port = self.server.run()
        self.uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        return self.uri

    def stop(self) -> None:
        self.server.stop()

    # -- one request ---------------------------------------------------------------
    def _handle(self, request) -> bool:
        doc = dict(request.doc)
        name = next(iter(doc))
        db = self.client[doc.get("$db") or request.namespace.split(".")[0] or "admin"]
        try:
            with self._lock:
                reply = self._run(name.lower(), doc, db)
        except DuplicateKeyError as exc:
            reply = {"n": 0, "writeErrors": [{"index": 0, "code": 11000, "errmsg": str(exc)}]}
        except Exception as exc:  # noqa: BLE001 - report as a server error, as mongod would
            request.command_err(code=8000, errmsg=f"{exc.__class__.__name__}: {exc}")
            return True
        request.reply(reply)
        return True

    def _run(self, name: str, doc: dict[str, Any], db) -> dict[str, Any]:
        if name in ("ismaster", "hello"):
            return {**HELLO, "localTime": datetime.datetime.now(datetime.timezone.utc)}
        if name in ("ping", "endsessions", "killcursors", "buildinfo", "getlasterror"):
            return {"version": "6.0.0"} if name == "buildinfo" else {}
        coll = db[doc[next(iter(doc))]] if isinstance(doc[next(iter(doc))], str) else None
        if name == "insert":
            for item in doc.get("documents", []):
                coll.insert_one(item)
            return {"n": len(doc.get("documents", []))}
        if name == "find":
            cursor = coll.find(doc.get("filter") or {}, doc.get("projection") or None)
            if doc.get("sort"):
                cursor = cursor.sort(list(doc["sort"].items()))
            if doc.get("skip"):
                cursor = cursor.skip(doc["skip"])
            if doc.get("limit"):
                cursor = cursor.limit(abs(doc["limit"]))
            return {"cursor": {"id": 0, "ns": f"{db.name}.{coll.name}", "firstBatch": list(cursor)}}
        if name == "update":
            n = modified = 0
            for spec in doc.get("updates", []):
                update = coll.update_many if spec.get("multi") else coll.update_one
                kwargs = {"upsert": bool(spec.get("upsert"))}
                if spec.get("arrayFilters"):
                    kwargs["array_filters"] = spec["arrayFilters"]
                result = update(spec["q"], spec["u"], **kwargs)
                n += result.matched_count
                modified += result.modified_count
            return {"n": n, "nModified": modified}
        if name == "findandmodify":
            value = coll.find_one_and_update(doc.get("query") or {}, doc["update"],
                                             projection=doc.get("fields"),
                                             upsert=bool(doc.get("upsert")),
                                             return_document=bool(doc.get("new")))
            return {"value": value, "lastErrorObject": {"n": int(value is not None),
                                                        "updatedExisting": value is not None}}
        if name == "delete":
            n = 0
            for spec in doc.get("deletes", []):
                delete = coll.delete_one if spec.get("limit") == 1 else coll.delete_many
                n += delete(spec["q"]).deleted_count
            return {"n": n}
        if name == "createindexes":
            for index in doc.get("indexes", []):
                coll.create_index(list(index["key"].items()), name=index.get("name"),
                                  unique=bool(index.get("unique")))
            return {"createdCollectionAutomatically": False}
        if name == "listindexes":
            indexes = [{"v": 2, "key": dict(info["key"]), "name": ix_name,
                        **({"unique": True} if info.get("unique") else {})}
                       for ix_name, info in coll.index_information().items()]
            return {"cursor": {"id": 0, "ns": f"{db.name}.{coll.name}", "firstBatch": indexes}}
        if name == "aggregate":
            docs = list(coll.aggregate(doc.get("pipeline") or []))
            return {"cursor": {"id": 0, "ns": f"{db.name}.{coll.name}", "firstBatch": docs}}
        if name in ("drop", "dropdatabase"):
            if coll is not None:
                coll.drop()
            return {}
        raise NotImplementedError(f"command {name} is not routed by the test double")
