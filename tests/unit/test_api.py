"""The HTTP contract with a fake Slurm: records, failures, duplicates, lookups."""
from __future__ import annotations

import threading

import bson
import pytest

from app.constants import TASK_METADATA, thaw
from app.errors import SlurmRejected, SlurmTimeout, SlurmUnavailable
from tests.conftest import authorized, hello_task, make_job


def submit(client, task):
    return client.post("/submit", json={"task": task})


def test_submit_answers_uuid_and_job_id_and_records_pending(client, fake_slurm, store):
    task = hello_task()
    resp = submit(client, task)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["uuid"] == task["uuid"] and body["slurm_job_id"] == 1001
    record = store.get(task["uuid"])
    assert record["slurm_job_state"] == "PENDING"
    assert record["slurm_job_id"] == 1001
    assert [h["state"] for h in record["history"]] == ["SUBMITTING", "PENDING"]
    sub, user = fake_slurm.submitted[0]
    assert user == "someone"
    assert sub.partition == "hpcz-test" and sub.time_limit == 30


def test_trailing_slash_works_as_in_the_reference_wget_line(client):
    assert client.post("/submit/", json={"task": hello_task()}).status_code == 200


def test_body_without_json_content_type_is_accepted(client):
    import json
    resp = client.post("/submit", data=json.dumps({"task": hello_task()}),
                       content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 200


def test_duplicate_uuid_is_409_and_never_reaches_slurm(client, fake_slurm):
    task = hello_task()
    assert submit(client, task).status_code == 200
    resp = submit(client, task)
    assert resp.status_code == 409
    assert resp.get_json()["code"] == "duplicate_uuid"
    assert len(fake_slurm.submitted) == 1


def test_two_identical_requests_racing_queue_one_job(app, fake_slurm, keys):
    task = hello_task()
    gate = threading.Event()
    fake_slurm.submit_delay = gate          # first submit waits inside "Slurm"
    results = []

    def post():
        results.append(authorized(app, keys[1]["admin"]).post("/submit", json={"task": task}).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(200):
        if 409 in results:
            break
        threading.Event().wait(0.01)
    gate.set()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]
    assert len(fake_slurm.submitted) == 1


def test_slurm_rejection_is_502_with_reason_and_a_submit_failed_record(client, fake_slurm, store):
    fake_slurm.fail_with = SlurmRejected(
        "slurmrestd refused submit: Invalid partition name specified (Slurm error 2000)",
        errors={"slurm_errors": [{"code": 2000, "error": "Invalid partition name specified",
                                  "description": ""}]})
    task = hello_task()
    resp = submit(client, task)
    assert resp.status_code == 502
    body = resp.get_json()
    assert "Invalid partition name specified" in body["message"]
    assert "SUBMIT_FAILED" in body["message"]
    assert body["errors"]["slurm_errors"][0]["code"] == 2000
    record = store.get(task["uuid"])
    assert record["slurm_job_state"] == "SUBMIT_FAILED"
    assert record["slurm_job_id"] is None
    assert "Invalid partition" in record["error"]["message"]
    assert record["error"]["slurm_errors"][0]["code"] == 2000


def test_slurm_unreachable_is_503_with_a_submit_failed_record(client, fake_slurm, store):
    fake_slurm.fail_with = SlurmUnavailable("slurmrestd at http://x is not reachable.")
    task = hello_task()
    resp = submit(client, task)
    assert resp.status_code == 503
    assert resp.get_json()["code"] == "slurm_unavailable"
    assert store.get(task["uuid"])["slurm_job_state"] == "SUBMIT_FAILED"


def test_submit_timeout_is_504_and_recorded_as_unknown(client, fake_slurm, store):
    fake_slurm.fail_with = SlurmTimeout("slurmrestd did not answer in time.")
    task = hello_task()
    resp = submit(client, task)
    assert resp.status_code == 504
    assert store.get(task["uuid"])["slurm_job_state"] == "SUBMIT_UNKNOWN"


def test_a_failed_uuid_cannot_be_reused_silently(client, fake_slurm):
    fake_slurm.fail_with = SlurmUnavailable("down")
    task = hello_task()
    assert submit(client, task).status_code == 503
    fake_slurm.fail_with = None
    assert submit(client, task).status_code == 409


def test_lookup_by_uuid_and_job_id_return_record_and_live_state(client, fake_slurm):
    task = hello_task()
    job_id = submit(client, task).get_json()["slurm_job_id"]
    fake_slurm.set_state(job_id, "RUNNING")
    by_uuid = client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()
    by_job = client.get(f"/monitor/slurm_job_id/{job_id}").get_json()
    assert by_uuid["monitor"]["task"]["uuid"] == task["uuid"]
    assert by_uuid["slurm"]["state"] == "RUNNING"
    assert by_job["monitor"]["task"]["uuid"] == task["uuid"]
    assert by_job["slurm"]["job_id"] == job_id


def test_lookup_saves_a_final_state_it_reads(client, fake_slurm, store):
    task = hello_task()
    job_id = submit(client, task).get_json()["slurm_job_id"]
    fake_slurm.jobs[job_id] = make_job(job_id, "FAILED", exit_code=3)
    body = client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()
    assert body["monitor"]["slurm_job_state"] == "FAILED"
    assert body["monitor"]["exit_code"] == 3
    record = store.get(task["uuid"])
    assert record["slurm_job_state"] == "FAILED" and record["exit_code"] == 3
    assert [h["state"] for h in record["history"]] == ["SUBMITTING", "PENDING", "FAILED"]


def test_completing_flag_does_not_finish_a_record(client, fake_slurm, store):
    task = hello_task()
    job_id = submit(client, task).get_json()["slurm_job_id"]
    fake_slurm.jobs[job_id] = make_job(job_id, "CANCELLED", flags=("COMPLETING",))
    client.get(f"/monitor/task_uuid/{task['uuid']}")
    assert store.get(task["uuid"])["slurm_job_state"] == "PENDING"


def test_lookup_of_unknown_task_is_404(client):
    for url in ("/monitor/task_uuid/123e4567-e89b-12d3-a456-000000000000",
                "/monitor/task_uuid/not-a-uuid", "/monitor/slurm_job_id/424242"):
        resp = client.get(url)
        assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"


def test_lookup_says_why_slurm_is_null(client, fake_slurm):
    task = hello_task()
    job_id = submit(client, task).get_json()["slurm_job_id"]
    del fake_slurm.jobs[job_id]
    body = client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()
    assert body["slurm"] is None
    assert body["slurm_error"]["code"] == "slurm_job_not_found"


def test_lookup_accepts_uppercase_uuid(client):
    task = hello_task()
    submit(client, task)
    assert client.get(f"/monitor/task_uuid/{task['uuid'].upper()}").status_code == 200


def test_monitor_registers_a_job_submitted_elsewhere_with_defaults(client, fake_slurm):
    fake_slurm.jobs[77] = make_job(77, "RUNNING")
    body = {"monitor": {"task": {"uuid": "0f0e0d0c-0b0a-4000-8000-000000000001",
                                 "username": "someone"}, "slurm_job_id": 77}}
    resp = client.post("/monitor", json=body)
    assert resp.status_code == 200
    record = resp.get_json()["monitor"]
    assert record["slurm_job_id"] == 77 and record["slurm_job_state"] == "PENDING"
    assert record["source"] == "monitor"
    assert client.post("/monitor", json=body).status_code == 409
    looked_up = client.get("/monitor/slurm_job_id/77").get_json()
    assert looked_up["monitor"]["slurm_job_state"] == "RUNNING"


@pytest.mark.parametrize("body,field", [
    ({"monitor": {"task": {"uuid": "0f0e0d0c-0b0a-4000-8000-000000000001"}, "slurm_job_id": 1}},
     "monitor.task.username"),
    ({"monitor": {"task": {"username": "someone"}, "slurm_job_id": 1}}, "monitor.task.uuid"),
    ({"monitor": {"task": {"uuid": "0f0e0d0c-0b0a-4000-8000-000000000001",
                           "username": "someone"}}}, "monitor.slurm_job_id"),
    ({"monitor": {"task": {"uuid": "0f0e0d0c-0b0a-4000-8000-000000000001",
                           "username": "someone"}, "slurm_job_id": 1,
                  "slurm_job_state": "HAPPY"}}, "monitor.slurm_job_state"),
])
def test_monitor_bad_body_names_the_field(client, body, field):
    resp = client.post("/monitor", json=body)
    assert resp.status_code == 400
    assert field in resp.get_json()["errors"]


def test_registry_is_never_changed_by_requests(client):
    before = thaw(TASK_METADATA)
    task = hello_task(name="echo_hello_world")
    del task["cmd"], task["params"]
    task["notification"] = {"methods": ["slack"], "params": {"slack": {"channel": "#mine"}}}
    assert submit(client, task).status_code == 200
    other = hello_task(name="echo_hello_world")
    del other["cmd"], other["params"]
    other["notification"] = {"methods": ["slack"]}
    assert submit(client, other).status_code == 200
    assert thaw(TASK_METADATA) == before
    with pytest.raises(TypeError):
        TASK_METADATA["generic"]["slurm"]["mem"] = 1      # read-only


def hello_world_task(**changes):
    task = hello_task(name="echo_hello_world", **changes)
    del task["cmd"], task["params"]
    return task


def test_one_users_recipients_never_leak_into_another_users_task(client, store):
    first = hello_world_task()
    first["notification"] = {"methods": ["slack"], "params": {"slack": {"channel": "#alice"}}}
    other = hello_world_task()
    other["notification"] = {"methods": ["slack"]}
    assert submit(client, first).status_code == 200
    assert submit(client, other).status_code == 200
    assert store.get(other["uuid"])["task"]["notification"]["params"]["slack"] == {
        "msg": "The echo_hello_world task has finished."}


def test_echo_hello_world_uses_its_canned_command(client, fake_slurm):
    task = hello_task(name="echo_hello_world")
    del task["cmd"], task["params"]
    assert submit(client, task).status_code == 200
    sub, _ = fake_slurm.submitted[0]
    assert "eval -- 'echo -e \"hello, world! (ran $SLURM_JOB_ID" in sub.script


def test_hello_world_record_is_small(client, store):
    task = hello_task()
    submit(client, task)
    record = store.get(task["uuid"])
    assert len(bson.encode({"_id": bson.ObjectId(), **record})) <= 4096


def test_every_error_is_json(client):
    for resp in (client.get("/nowhere"), client.put("/submit"),
                 client.post("/submit", data=b"x" * (2 * 1024 * 1024))):
        assert resp.is_json and set(resp.get_json()) == {"code", "status", "message", "errors"}


def test_openapi_document_lists_the_contract(client):
    spec = client.get("/openapi.json").get_json()
    for path in ("/submit", "/monitor", "/monitor/task_uuid/{task_uuid}",
                 "/monitor/slurm_job_id/{slurm_job_id}", "/slurm/ping"):
        assert path in spec["paths"], path

