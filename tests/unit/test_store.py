"""TaskStore on mongomock, and on a real MongoDB when MONGODB_URI names one."""
from __future__ import annotations

import time

import pytest

from app import create_app
from app.errors import DuplicateTask, JobAlreadyTracked, StoreUnavailable
from app.store import TaskStore
from app.tasks import new_record
from app.auth import ROLES
from tests.conftest import FakeSlurmClient, authorized, hello_task, make_keys


def record(uuid=None, state="PENDING", job_id=None):
    task = hello_task()
    if uuid:
        task["uuid"] = uuid
    return new_record(task, state=state, source="submit", job_id=job_id)


def test_insert_and_get(store):
    rec = record(job_id=5)
    store.insert(rec)
    got = store.get(rec["task"]["uuid"])
    assert got["task"] == rec["task"] and "_id" not in got
    assert got["created_at"] == rec["created_at"]


def test_uuid_is_unique(store):
    rec = record()
    store.insert(rec)
    with pytest.raises(DuplicateTask):
        store.insert(record(uuid=rec["task"]["uuid"]))


def test_compare_and_set(store):
    rec = record(state="PENDING")
    uuid = rec["task"]["uuid"]
    store.insert(rec)
    assert store.update_state(uuid, state="RUNNING", expected="PENDING") is True
    # A second writer that still believes PENDING changes nothing.
    assert store.update_state(uuid, state="RUNNING", expected="PENDING") is False
    assert store.update_state(uuid, state="COMPLETED", expected="RUNNING",
                              fields={"exit_code": 0}) is True
    got = store.get(uuid)
    assert got["slurm_job_state"] == "COMPLETED" and got["exit_code"] == 0
    assert [h["state"] for h in got["history"]] == ["PENDING", "RUNNING", "COMPLETED"]


def test_changes_come_as_heads_and_active_tasks_in_full_by_uuid(store):
    """What a poller reads each cycle: the tasks changed since a time, each as its
    uuid, job id, state and whether it is active (not its script, nor whom to tell);
    then, in full, only the active ones it names."""
    from app.store import utcnow

    since = utcnow()
    time.sleep(0.002)
    running, ended, older = record(job_id=1), record(job_id=2), record(job_id=3)
    for rec in (running, ended):
        store.insert(rec)
    assert store.update_state(running["task"]["uuid"], state="RUNNING", expected="PENDING")
    assert store.update_state(ended["task"]["uuid"], state="COMPLETED", expected="PENDING",
                              fields={"exit_code": 0})
    heads = sorted(store.changed_since(since), key=lambda h: h["slurm_job_id"])
    assert heads == [
        {"task": {"uuid": running["task"]["uuid"]}, "slurm_job_id": 1,
         "slurm_job_state": "RUNNING", "active": True},
        {"task": {"uuid": ended["task"]["uuid"]}, "slurm_job_id": 2,
         "slurm_job_state": "COMPLETED", "active": False}]
    store.insert(older)                             # active, but not asked for
    full = store.active_tasks([h["task"]["uuid"] for h in heads] + ["no-such-uuid"])
    assert [t["task"]["uuid"] for t in full] == [running["task"]["uuid"]]
    assert full[0]["task"]["notification"] == running["task"]["notification"]
    assert full[0]["slurm_job_state"] == "RUNNING" and full[0]["created_at"]
    assert len(store.active_tasks()) == 2 and store.active_tasks([]) == []


def test_get_by_job_id_returns_the_newest(store):
    old = record(job_id=42, state="COMPLETED")          # before the cluster was rebuilt
    store.insert(old)
    time.sleep(0.005)
    new = record(job_id=42)
    store.insert(new)
    assert store.get_by_job_id(42)["task"]["uuid"] == new["task"]["uuid"]
    assert store.get_by_job_id(43) is None


def test_one_active_task_per_job_id_and_cluster(store):
    first = record(job_id=42)
    store.insert(first)
    with pytest.raises(JobAlreadyTracked):
        store.insert(record(job_id=42))
    assert len(store.job_holders(42)) == 1
    store.insert(record(job_id=42, state="COMPLETED"))      # history may repeat an id
    elsewhere = record(job_id=42)
    elsewhere["task"]["cluster"] = "gpu"                    # and another cluster has its own
    store.insert(elsewhere)
    # An update that would give a second active task the id is refused too.
    submitting = record(state="SUBMITTING")
    store.insert(submitting)
    with pytest.raises(JobAlreadyTracked):
        store.update_state(submitting["task"]["uuid"], state="PENDING", expected="SUBMITTING",
                           fields={"slurm_job_id": 42})
    assert store.get(submitting["task"]["uuid"])["slurm_job_state"] == "SUBMITTING"
    # Once the first is final, the id is free again.
    assert store.update_state(first["task"]["uuid"], state="LOST", expected="PENDING")
    assert store.update_state(submitting["task"]["uuid"], state="PENDING", expected="SUBMITTING",
                              fields={"slurm_job_id": 42})
    holders = store.job_holders(42)
    assert [h["active"] for h in holders].count(True) == 2          # one per cluster
    assert {h["uuid"] for h in store.job_holders(42, "gpu")} == {elsewhere["task"]["uuid"]}


def test_get_by_job_id_prefers_the_active_task_and_filters_by_user(store):
    mine = record(job_id=7)
    store.insert(mine)
    time.sleep(0.005)
    theirs = record(job_id=7, state="LOST")                     # newer, final, another user's
    theirs["task"]["username"] = "eve"
    store.insert(theirs)
    assert store.get_by_job_id(7)["task"]["uuid"] == mine["task"]["uuid"]     # active first
    assert store.get_by_job_id(7, usernames=["eve"])["task"]["uuid"] == theirs["task"]["uuid"]
    assert store.get_by_job_id(7, usernames=["someone"])["task"]["uuid"] == mine["task"]["uuid"]
    assert store.get_by_job_id(7, usernames=["nobody"]) is None


def test_many_state_changes_at_once_are_each_compare_and_set(store):
    """``update_states`` (one bulk write on MongoDB): each change applies only from its
    expected state, with its history entry and deliveries, and one refused change
    (a job id another active task holds, a state already changed) leaves the others."""
    from app.tracking import plan_deliveries
    from app.store import utcnow
    first, second, moved, holder, lost = (record(state="RUNNING", job_id=i) for i in range(1, 6))
    first["task"]["notification"] = {"methods": ["email"], "params": {
        "email": {"recipient": "a@b.org"}}}
    for rec in (first, second, moved, holder):
        store.insert(rec)
    lost["slurm_job_state"] = "LOST"
    store.insert(lost)
    assert store.update_state(moved["task"]["uuid"], state="COMPLETED", expected="RUNNING")
    deliveries = plan_deliveries(first, "COMPLETED", utcnow())
    out = store.update_states([
        dict(uuid=first["task"]["uuid"], state="COMPLETED", expected="RUNNING",
             fields={"exit_code": 0}, note=None, deliveries=deliveries),
        dict(uuid=moved["task"]["uuid"], state="FAILED", expected="RUNNING", fields={},
             note=None, deliveries=[]),                   # changed meanwhile: not applied
        dict(uuid=lost["task"]["uuid"], state="RUNNING", expected="LOST",
             fields={"slurm_job_id": 4}, note=None, deliveries=[]),   # job 4 is held
        dict(uuid=second["task"]["uuid"], state="FAILED", expected="RUNNING",
             fields={"exit_code": 3}, note="ended", deliveries=[]),
    ])
    assert out[:2] == [True, False] and isinstance(out[2], JobAlreadyTracked) and out[3] is True
    done = store.get(first["task"]["uuid"])
    assert done["slurm_job_state"] == "COMPLETED" and done["exit_code"] == 0
    assert done["history"][-1]["state"] == "COMPLETED"
    assert [d["id"] for d in done["deliveries"]] == [d["id"] for d in deliveries]
    failed = store.get(second["task"]["uuid"])
    assert (failed["slurm_job_state"], failed["exit_code"]) == ("FAILED", 3)
    assert failed["history"][-1]["note"] == "ended"
    assert store.get(moved["task"]["uuid"])["slurm_job_state"] == "COMPLETED"
    assert store.get(lost["task"]["uuid"])["slurm_job_state"] == "LOST"
    assert store.count_outbox() == 1
    assert store.update_states([]) == []


def test_indexes(store):
    if not isinstance(store, TaskStore):
        pytest.skip("the embedded store keeps dict indexes")
    store.get("x")
    names = {ix["name"]: ix for ix in store.collection.list_indexes()}
    assert names["task_uuid_unique"]["unique"] is True
    assert "slurm_job_id" in names
    assert names["active_job_unique"]["unique"] is True
    assert names["active_job_unique"]["partialFilterExpression"] == {
        "active": True, "slurm_job_id": {"$gt": 0}}


def test_mongodb_down_is_503_and_nothing_reaches_slurm():
    import pymongo
    collection = pymongo.MongoClient("mongodb://127.0.0.1:9", connect=False,
                                     serverSelectionTimeoutMS=200)["db"]["tasks"]
    slurm = FakeSlurmClient()
    keys, plain = make_keys(admin=("*", ROLES))
    app = create_app({}, store=TaskStore(collection), slurm=slurm, keys=keys, environ={})
    resp = authorized(app, plain["admin"]).post("/submit", json={"task": hello_task()})
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["code"] == "store_unavailable" and "MongoDB" in body["message"]
    assert slurm.submitted == []
    with pytest.raises(StoreUnavailable):
        TaskStore(collection).get("x")


def test_heartbeat_and_counts(store):
    from datetime import timedelta
    from app.store import utcnow
    from app.tracking import plan_deliveries
    assert store.last_beat("poller") is None
    now = utcnow()
    store.beat("poller", now, {"cycle": 1})
    store.beat("poller", now + timedelta(seconds=1), {"cycle": 2})
    assert store.last_beat("poller") == {"at": now + timedelta(seconds=1), "cycle": 2}
    store.insert(record(state="PENDING", job_id=1))
    store.insert(record(state="PENDING", job_id=2))
    running = record(state="RUNNING", job_id=3)
    store.insert(running)
    store.insert(record(state="COMPLETED", job_id=4))
    assert store.count_active_by_state() == {"PENDING": 2, "RUNNING": 1}
    assert store.count_outbox() == 0
    running["task"]["notification"] = {"methods": ["email"], "params": {
        "email": {"recipient": ["a@b.org", "c@d.org"]}}}
    store.update_state(running["task"]["uuid"], state="COMPLETED",
                       deliveries=plan_deliveries(running, "COMPLETED", now))
    assert store.count_outbox() == 2
    assert store.count_active_by_state() == {"PENDING": 2}
