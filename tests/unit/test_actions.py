"""List, wait, cancel, resubmit (with a fake Slurm)."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import authorized, hello_task, make_job


def submit(client, **changes):
    task = hello_task(**changes)
    resp = client.post("/submit", json={"task": task})
    assert resp.status_code == 200, resp.get_json()
    return task["uuid"], resp.get_json()["slurm_job_id"]


def test_list_filters_and_pages(client, fake_slurm, store):
    uuids = [submit(client)[0] for _ in range(5)]
    other, _ = submit(client, username="other", cwd="/home/other")

    def newest_first(ids):       # creation time, then uuid (times can tie to the ms)
        return sorted(ids, key=lambda u: (store.get(u)["created_at"], u), reverse=True)

    everything = client.get("/monitor?limit=500").get_json()
    assert [t["uuid"] for t in everything["tasks"]] == newest_first([*uuids, other])
    assert everything["next_cursor"] is None
    mine = newest_first(uuids)
    first = client.get("/monitor?username=someone&limit=2").get_json()
    assert [t["uuid"] for t in first["tasks"]] == mine[:2]
    second = client.get(f"/monitor?username=someone&limit=2&cursor={first['next_cursor']}").get_json()
    third = client.get(f"/monitor?username=someone&limit=2&cursor={second['next_cursor']}").get_json()
    assert [t["uuid"] for t in second["tasks"] + third["tasks"]] == mine[2:]
    assert third["next_cursor"] is None
    assert client.get("/monitor?state=PENDING&name=generic").get_json()["tasks"][0]["slurm_job_state"] == "PENDING"
    assert client.get("/monitor?state=COMPLETED").get_json()["tasks"] == []
    assert client.get("/monitor?since=2999-01-01T00:00:00Z").get_json()["tasks"] == []
    bad = client.get("/monitor?cursor=not-a-cursor")
    assert bad.status_code == 400 and "cursor" in bad.get_json()["errors"]
    unknown = client.get("/monitor?colour=blue")
    assert unknown.status_code == 400 and "colour" in unknown.get_json()["errors"]


def test_a_key_lists_only_its_users(app, keys, client):
    submit(client)
    submit(client, username="other", cwd="/home/other")
    someone = authorized(app, keys[1]["someone"])
    listed = someone.get("/monitor").get_json()["tasks"]
    assert {t["username"] for t in listed} == {"someone"}
    assert someone.get("/monitor?username=other").status_code == 403


def test_cancel(app, keys, client, fake_slurm, store):
    uuid, job_id = submit(client)
    fake_slurm.jobs[job_id] = make_job(job_id, "RUNNING")
    assert authorized(app, keys[1]["someone"]).delete(f"/monitor/task_uuid/{uuid}").status_code == 403
    resp = client.delete(f"/monitor/task_uuid/{uuid}")
    assert resp.status_code == 202
    assert resp.get_json() == {"uuid": uuid, "slurm_job_id": job_id,
                               "slurm_job_state": "PENDING", "cancel_requested": True}
    assert fake_slurm.cancelled == [(job_id, "someone")]       # as the task's user
    assert store.get(uuid)["cancel_requested_at"] is not None
    fake_slurm.jobs[job_id] = make_job(job_id, "CANCELLED")
    client.get(f"/monitor/task_uuid/{uuid}")
    again = client.delete(f"/monitor/slurm_job_id/{job_id}")
    assert again.status_code == 409 and "already finished (CANCELLED)" in again.get_json()["message"]
    assert client.delete("/monitor/task_uuid/123e4567-e89b-12d3-a456-000000000000").status_code == 404


def test_cancel_of_a_task_without_a_job_is_409(client, fake_slurm):
    from app.errors import SlurmUnavailable
    fake_slurm.fail_with = SlurmUnavailable("down")
    task = hello_task()
    client.post("/submit", json={"task": task})
    assert client.delete(f"/monitor/task_uuid/{task['uuid']}").status_code == 409


def test_resubmit_with_overrides(client, fake_slurm, store):
    uuid, job_id = submit(client)
    resp = client.post(f"/monitor/task_uuid/{uuid}/resubmit",
                       json={"task": {"slurm": {"mem": 2000, "time": "1:00:00"}}})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["resubmitted_from"] == uuid and body["uuid"] != uuid
    new = store.get(body["uuid"])
    assert new["resubmitted_from"] == uuid and new["task"]["slurm"]["mem"] == 2000
    assert new["task"]["slurm"]["time"] == 60 and new["task"]["cmd"] == "echo"
    assert store.get(uuid)["resubmissions"] == [body["uuid"]]
    sub, user = fake_slurm.submitted[-1]
    assert (sub.memory_per_node, sub.time_limit, user) == (2000, 60, "someone")


def test_resubmit_canned_task_and_bad_overrides(client, fake_slurm):
    task = hello_task(name="echo_hello_world")
    del task["cmd"], task["params"]
    assert client.post("/submit", json={"task": task}).status_code == 200
    assert client.post(f"/monitor/task_uuid/{task['uuid']}/resubmit", json={}).status_code == 200
    bad = client.post(f"/monitor/task_uuid/{task['uuid']}/resubmit",
                      json={"task": {"slurm": {"mem": "lots"}}})
    assert bad.status_code == 400 and "task.slurm.mem" in bad.get_json()["errors"]
    mine = hello_task()["uuid"]
    chosen = client.post(f"/monitor/task_uuid/{task['uuid']}/resubmit", json={"task": {"uuid": mine}})
    assert chosen.get_json()["uuid"] == mine
    assert client.post(f"/monitor/task_uuid/{task['uuid']}/resubmit",
                       json={"task": {"uuid": mine}}).status_code == 409
    assert client.post("/monitor/task_uuid/nope/resubmit", json={}).status_code == 404


def test_wait_answers_when_the_task_is_final(app, keys, client, fake_slurm, store):
    """A waiter is woken by what the tracker records (here the poller's compare-and-set
    path), and never asks slurmrestd itself."""
    from app.tracking import record_job_state

    uuid, job_id = submit(client)
    fake_slurm.jobs[job_id] = make_job(job_id, "RUNNING")
    reads = []
    real_get_job = fake_slurm.get_job
    fake_slurm.get_job = lambda job: reads.append(job) or real_get_job(job)

    def job_ends():
        fake_slurm.set_state(job_id, "COMPLETED")
        record_job_state(store, store.get(uuid), real_get_job(job_id))

    timer = threading.Timer(1.0, job_ends)
    timer.start()
    started = time.monotonic()
    body = client.get(f"/monitor/task_uuid/{uuid}?wait=30").get_json()
    assert body["monitor"]["slurm_job_state"] == "COMPLETED"
    assert body["slurm"] is None and body["slurm_error"]["code"] == "not_read_while_waiting"
    assert 0.9 <= time.monotonic() - started < 5
    started = time.monotonic()
    uuid2, job2 = submit(client)
    fake_slurm.jobs[job2] = make_job(job2, "RUNNING")
    body = client.get(f"/monitor/slurm_job_id/{job2}?wait=1").get_json()
    assert body["monitor"]["slurm_job_state"] == "PENDING"      # nothing recorded a change
    assert 1 <= time.monotonic() - started < 4
    assert reads == []                                           # no slurmrestd request
    final = client.get(f"/monitor/task_uuid/{uuid}?wait=5")      # already final: at once
    assert final.get_json()["monitor"]["slurm_job_state"] == "COMPLETED"
    assert authorized(app, keys[1]["other"]).get(f"/monitor/task_uuid/{uuid}?wait=5").status_code == 403


def test_output_is_501_when_the_server_does_not_read_files(client):
    uuid, _ = submit(client)
    resp = client.get(f"/monitor/task_uuid/{uuid}/output")
    assert resp.status_code == 501 and "SLURM_PROXY_OUTPUT_PREFIXES" in resp.get_json()["message"]


@pytest.mark.parametrize("query", ["stream=stdin", "tail=0", "tail=x"])
def test_output_bad_arguments(client, query):
    uuid, _ = submit(client)
    assert client.get(f"/monitor/task_uuid/{uuid}/output?{query}").status_code == 400


def test_slurm_options_pass_through(client, fake_slurm):
    first, first_job = submit(client)
    task = hello_task()
    task["slurm"].update(account="physics", qos="high", array="0-9%2",
                         dependency=f"afterok:{first}:77,singleton")
    assert client.post("/submit", json={"task": task}).status_code == 200
    sub = fake_slurm.submitted[-1][0]
    assert (sub.account, sub.qos, sub.array) == ("physics", "high", "0-9%2")
    assert sub.dependency == f"afterok:{first_job}:77,singleton"
    from app.slurm.versions import ADAPTERS
    for version in ("0.0.38", "0.0.42"):
        job = ADAPTERS[version]().submit_body(sub)["job"]
        assert (job["account"], job["qos"], job["array"], job["dependency"]) == (
            "physics", "high", "0-9%2", f"afterok:{first_job}:77,singleton")


def test_a_dependency_on_another_users_task_is_refused(app, keys, client):
    theirs, _ = submit(client, username="other", cwd="/home/other")
    task = hello_task()
    task["slurm"]["dependency"] = f"afterok:{theirs}"
    resp = authorized(app, keys[1]["someone"]).post("/submit", json={"task": task})
    assert resp.status_code == 403


@pytest.mark.parametrize("field,value", [("array", "0-9%"), ("array", "a-b"),
                                         ("dependency", "after:"), ("dependency", "afterok:x"),
                                         ("account", "a b"), ("qos", "q;rm")])
def test_bad_slurm_options(client, field, value):
    task = hello_task()
    task["slurm"][field] = value
    resp = client.post("/submit", json={"task": task})
    assert resp.status_code == 400 and f"task.slurm.{field}" in resp.get_json()["errors"]
