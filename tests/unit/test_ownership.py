"""A record is only ever about its owner's job (with a fake Slurm; the same against the
real cluster, with PrivateData=jobs, is tests/integration/test_cross_user.py)."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from app import create_app
from app.auth import ROLES
from app.notify.message import build_event, subject, text
from app.poller import Poller
from app.store import utcnow
from app.tasks import new_record
from tests.conftest import authorized, hello_task, make_job, make_keys
from tests.helpers import Clock, PollSlurm, add_task

EVE_TASK = "0f0e0d0c-0b0a-4000-8000-0000000000e1"


@pytest.fixture
def keys():
    user_roles = ["submit", "read", "cancel"]
    return make_keys(admin=("*", ROLES), someone=(["someone"], user_roles), eve=(["eve"], user_roles),
                     portal=("*", ["submit", "read", "cancel"]))


@pytest.fixture
def app(store, fake_slurm, keys):
    return create_app({}, store=store, slurm=fake_slurm, keys=keys[0], environ={})


def as_(app, keys, name):
    return authorized(app, keys[1][name])


def register(client, job_id, username, uuid=None, **task):
    import uuid as uuid_module
    body = {"monitor": {"task": {"uuid": uuid or str(uuid_module.uuid4()), "username": username,
                                 **task}, "slurm_job_id": job_id}}
    return client.post("/monitor", json=body)


def test_registering_another_users_job_is_403_naming_the_owner_only_to_an_admin(
        app, keys, fake_slurm, store):
    fake_slurm.jobs[8249] = make_job(8249, "RUNNING", name="secret-project-x", user="someone")
    eve = register(as_(app, keys, "eve"), 8249, "eve", uuid=EVE_TASK)
    assert eve.status_code == 403
    message = eve.get_json()["message"]
    assert "another user" in message and "someone" not in message and "secret" not in message
    assert store.get(EVE_TASK) is None and store.job_holders(8249) == []
    # A key for every user (a portal) may act for eve, and still cannot.
    assert register(as_(app, keys, "portal"), 8249, "eve").status_code == 403
    admin = register(as_(app, keys, "admin"), 8249, "eve")
    assert admin.status_code == 403 and "user 'someone'" in admin.get_json()["message"]
    assert store.job_holders(8249) == []
    ok = register(as_(app, keys, "someone"), 8249, "someone")
    assert ok.status_code == 200 and ok.get_json()["monitor"]["slurm_job_id"] == 8249


def test_a_job_slurm_does_not_know_is_404_and_slurmdb_is_asked_when_on(store, fake_slurm, keys):
    app = create_app({}, store=store, slurm=fake_slurm, keys=keys[0], environ={})
    resp = register(as_(app, keys, "someone"), 4242, "someone")
    assert resp.status_code == 404 and resp.get_json()["code"] == "slurm_job_not_found"
    assert "nothing was recorded" in resp.get_json()["message"]
    assert store.job_holders(4242) == []
    fake_slurm.db_jobs[4242] = make_job(4242, "COMPLETED", user="eve")
    # Without SLURM_SLURMDB the accounting record is not consulted.
    assert register(as_(app, keys, "someone"), 4242, "someone").status_code == 404
    app = create_app({"SLURM_SLURMDB": True}, store=store, slurm=fake_slurm, keys=keys[0], environ={})
    assert register(as_(app, keys, "someone"), 4242, "someone").status_code == 403   # eve's
    assert register(as_(app, keys, "eve"), 4242, "eve").status_code == 200
    none = register(as_(app, keys, "eve"), 4343, "eve")
    assert none.status_code == 404 and "slurmdb" in none.get_json()["message"]


def test_a_tracked_job_is_409_naming_the_task_to_a_key_that_may_see_it(app, keys, fake_slurm, store):
    task = hello_task()
    submitted = as_(app, keys, "someone").post("/submit", json={"task": task}).get_json()
    job_id = submitted["slurm_job_id"]
    again = register(as_(app, keys, "someone"), job_id, "someone")
    assert again.status_code == 409
    assert again.get_json()["errors"] == {"task_uuid": task["uuid"]}
    assert task["uuid"] in again.get_json()["message"]
    # Finished, the job is still the one that task tracked: still 409.
    fake_slurm.set_state(job_id, "COMPLETED")
    as_(app, keys, "someone").get(f"/monitor/task_uuid/{task['uuid']}")
    assert store.get(task["uuid"])["slurm_job_state"] == "COMPLETED"
    assert register(as_(app, keys, "someone"), job_id, "someone").status_code == 409
    # A job id seen before, on a cluster since rebuilt: the old task predates the job.
    fake_slurm.jobs[job_id] = replace(make_job(job_id, "RUNNING", user="someone"),
                                      submit_time=utcnow() + timedelta(hours=1))
    assert register(as_(app, keys, "someone"), job_id, "someone").status_code == 200


def test_409_names_the_task_to_every_key_that_may_register_the_job(store, fake_slurm):
    """Only the job's owner's tasks can track it, and a key must act for the owner to
    register it: so whoever gets the 409 may see the task it names."""
    keys, plain = make_keys(alice=(["someone"], ROLES), bob=(["someone", "x"], ["submit"]))
    app = create_app({}, store=store, slurm=fake_slurm, keys=keys, environ={})
    fake_slurm.jobs[99] = make_job(99, "RUNNING", user="someone")
    first = register(authorized(app, plain["alice"]), 99, "someone")
    assert first.status_code == 200
    second = register(authorized(app, plain["bob"]), 99, "someone")
    assert second.status_code == 409
    assert second.get_json()["errors"]["task_uuid"] == first.get_json()["monitor"]["task"]["uuid"]


def test_an_old_record_of_the_wrong_user_never_hides_or_blocks_the_owner(app, keys, fake_slurm, store):
    """eve's record from before ownership was checked (the hijack of the issue): newer
    than someone's, same job id. someone's lookups still find someone's task, eve
    sees nothing of someone's job, and someone may register the job."""
    task = hello_task()
    job_id = as_(app, keys, "someone").post("/submit", json={"task": task}).get_json()["slurm_job_id"]
    fake_slurm.set_state(job_id, "RUNNING")
    hijack = new_record({"uuid": EVE_TASK, "username": "eve", "cluster": "default"},
                        state="PENDING", source="monitor", job_id=job_id)
    hijack["created_at"] = utcnow() + timedelta(seconds=5)      # the newest record
    hijack["slurm_job_state"] = "LOST"          # (two active ones: the unique index says no)
    store.insert(hijack)
    mine = as_(app, keys, "someone").get(f"/monitor/slurm_job_id/{job_id}")
    assert mine.status_code == 200 and mine.get_json()["monitor"]["task"]["uuid"] == task["uuid"]
    # eve's own lookup of that job id finds her record, and no live job with it
    theirs = as_(app, keys, "eve").get(f"/monitor/slurm_job_id/{job_id}").get_json()
    assert theirs["monitor"]["task"]["uuid"] == EVE_TASK
    assert theirs["slurm"] is None and theirs["slurm_error"]["code"] == "slurm_job_not_owned"
    assert as_(app, keys, "eve").delete(f"/monitor/slurm_job_id/{job_id}").status_code == 409
    assert fake_slurm.cancelled == []


def test_an_active_record_of_the_wrong_user_is_retired_when_the_owner_registers(
        app, keys, fake_slurm, store):
    fake_slurm.jobs[8249] = make_job(8249, "RUNNING", user="someone")
    store.insert(new_record({"uuid": EVE_TASK, "username": "eve", "cluster": "default"},
                            state="PENDING", source="monitor", job_id=8249))
    resp = register(as_(app, keys, "someone"), 8249, "someone")
    assert resp.status_code == 200
    retired = store.get(EVE_TASK)
    assert retired["slurm_job_state"] == "LOST" and retired["state_reason"] == "JobIdReused"
    assert as_(app, keys, "someone").get("/monitor/slurm_job_id/8249").get_json()[
        "monitor"]["task"]["username"] == "someone"


def test_lookup_by_job_id_is_403_when_only_other_users_have_it(app, keys, fake_slurm):
    task = hello_task()
    job_id = as_(app, keys, "someone").post("/submit", json={"task": task}).get_json()["slurm_job_id"]
    eve = as_(app, keys, "eve").get(f"/monitor/slurm_job_id/{job_id}")
    assert eve.status_code == 403 and "someone" not in eve.get_json()["message"]
    assert as_(app, keys, "eve").delete(f"/monitor/slurm_job_id/{job_id}").status_code == 403
    assert as_(app, keys, "eve").get("/monitor/slurm_job_id/777777").status_code == 404
    assert fake_slurm.cancelled == []


def test_live_reads_go_to_slurm_as_the_tasks_user(app, keys, fake_slurm):
    task = hello_task()
    admin = as_(app, keys, "admin")
    job_id = admin.post("/submit", json={"task": task}).get_json()["slurm_job_id"]
    fake_slurm.reads.clear()
    admin.get(f"/monitor/task_uuid/{task['uuid']}")
    admin.get(f"/monitor/slurm_job_id/{job_id}")
    admin.delete(f"/monitor/task_uuid/{task['uuid']}")
    assert fake_slurm.reads == [(job_id, "someone")] * 3
    # Registering reads the job once with the service's identity: the only view in
    # which another user's job is not simply invisible.
    fake_slurm.jobs[55] = make_job(55, "RUNNING", user="someone")
    fake_slurm.reads.clear()
    register(admin, 55, "someone")
    assert fake_slurm.reads == [(55, None)]


def test_the_poller_never_records_another_users_job(store):
    """A task whose job id now names another user's job (an id reused, or a record from
    before ownership was checked): the poller's service-wide view of every job is never
    saved into it nor reported to its user; after the grace period it is LOST."""
    slurm, clock = PollSlurm(), Clock()
    uuid = add_task(store, 31, username="eve", cwd="/home/eve")
    slurm.jobs[31] = make_job(31, "COMPLETED", name="secret-project-x", user="someone")
    poller = Poller(store, slurm, lost_after=60, clock=clock)
    poller.run_once()
    record = store.get(uuid)
    assert record["slurm_job_state"] == "PENDING" and record.get("deliveries", []) == []
    assert "secret" not in repr(record)
    clock.advance(61)
    poller.run_once()
    assert store.get(uuid)["slurm_job_state"] == "LOST"
    # The same when slurmdb is asked about a job slurmctld no longer has.
    other = add_task(store, 41, username="eve", cwd="/home/eve")
    slurm.db[41] = make_job(41, "COMPLETED", name="secret-project-x", user="someone")
    poller.release()            # it stops; the next poller leads (one per cluster)
    with_db = Poller(store, slurm, lost_after=60, slurmdb=True, clock=clock)
    with_db.run_once()
    assert store.get(other)["slurm_job_state"] == "PENDING"
    clock.advance(61)
    with_db.run_once()
    assert store.get(other)["slurm_job_state"] == "LOST"
    assert "secret" not in repr(store.get(other))
    # A job carrying the task's comment, but another user's, is not taken for it.
    pending = new_record({"uuid": "0f0e0d0c-0b0a-4000-8000-0000000000e2", "username": "eve"},
                         state="SUBMIT_UNKNOWN", source="submit")
    pending["created_at"] = clock.now - timedelta(seconds=10)
    store.insert(pending)
    slurm.jobs[32] = replace(make_job(32, "RUNNING", user="someone"),
                             comment="slurm-proxy:0f0e0d0c-0b0a-4000-8000-0000000000e2")
    poller.run_once()
    assert store.get("0f0e0d0c-0b0a-4000-8000-0000000000e2")["slurm_job_id"] is None


def test_a_submit_given_a_job_id_a_stale_task_still_holds_retires_that_task(app, keys, fake_slurm, store):
    """A rebuilt cluster hands out job ids again: the new job is the truth."""
    stale = add_task(store, fake_slurm.next_id + 1, state="RUNNING", cluster="default")
    task = hello_task()
    resp = as_(app, keys, "someone").post("/submit", json={"task": task})
    assert resp.status_code == 200
    job_id = resp.get_json()["slurm_job_id"]
    assert store.get(task["uuid"])["slurm_job_state"] == "PENDING"
    assert store.get(task["uuid"])["slurm_job_id"] == job_id
    assert store.get(stale)["slurm_job_state"] == "LOST"
    assert as_(app, keys, "someone").get(f"/monitor/slurm_job_id/{job_id}").get_json()[
        "monitor"]["task"]["uuid"] == task["uuid"]


def test_notifications_of_a_registered_task_never_say_none(store):
    record = new_record({"uuid": EVE_TASK, "username": "someone"}, state="CANCELLED",
                        source="monitor", job_id=8249)
    delivery = {"id": "d1", "method": "email", "state": "CANCELLED", "created_at": utcnow()}
    event = build_event(record, delivery)
    assert subject(event, {}) == "[slurm-proxy] job 8249 CANCELLED"
    body = text(event)
    assert "None" not in body and f"job 8249 ({EVE_TASK})" in body
    named = build_event(new_record(hello_task(), state="COMPLETED", source="submit", job_id=3),
                        {**delivery, "state": "COMPLETED"})
    assert subject(named, {}) == "[slurm-proxy] generic COMPLETED (job 3)"
    assert "None" not in text(named)
