"""Submit and monitor against the real local Slurm: jobs run as their owner."""
from __future__ import annotations

import json
import os
import pwd
import re
import socket
import subprocess

import bson
import pytest

from tests.integration.conftest import (KEY_FILE, PARTITION, SLURM_BASE_URL, TEST_USER, live,
                                        slurm_config, task_in, wait_for_final)

pytestmark = pytest.mark.slurm


def test_hello_world_runs_as_the_user_and_writes_its_output(live_client, live_app, workdir):
    task = task_in(workdir)
    resp = live_client.post("/submit/", json={"task": task})
    assert resp.status_code == 200, resp.get_json()
    job_id = resp.get_json()["slurm_job_id"]
    body = wait_for_final(live_client, task["uuid"])
    assert body["monitor"]["slurm_job_state"] == "COMPLETED"
    assert body["monitor"]["exit_code"] == 0
    assert body["slurm"]["user_name"] == TEST_USER
    out = f"{workdir}/slurm-proxy-test/output/slurm-proxy-test.generic.output.txt"
    text = open(out).read()
    assert re.fullmatch(rf"hello, world! \(sent job {job_id} to {TEST_USER} at .+\)\n", text), text
    uid = pwd.getpwnam(TEST_USER).pw_uid
    assert os.stat(out).st_uid == uid
    assert os.stat(f"{workdir}/slurm-proxy-test/input").st_uid == uid
    assert os.path.getsize(f"{workdir}/slurm-proxy-test/error/slurm-proxy-test.generic.error.txt") == 0
    # The stored record stays small (the reference averaged 38 kB).
    record = live_app.extensions["slurm_proxy"].store.get(task["uuid"])
    assert len(bson.encode({"_id": bson.ObjectId(), **record})) <= 4096


def test_exit_3_is_stored_as_failed_with_exit_code_3(live_client, workdir):
    task = task_in(workdir, cmd="exit", params=["3"])
    assert live_client.post("/submit", json={"task": task}).status_code == 200
    body = wait_for_final(live_client, task["uuid"])
    assert body["monitor"]["slurm_job_state"] == "FAILED"
    assert body["monitor"]["exit_code"] == 3
    assert body["slurm"]["exit_code"] == 3


def test_duplicate_uuid_is_409(live_client, workdir):
    task = task_in(workdir)
    assert live_client.post("/submit", json={"task": task}).status_code == 200
    resp = live_client.post("/submit", json={"task": task})
    assert resp.status_code == 409


def test_unknown_partition_is_502_with_slurms_reason(live_client, workdir):
    task = task_in(workdir)
    task["slurm"]["partition"] = "no-such-partition"
    resp = live_client.post("/submit", json={"task": task})
    assert resp.status_code == 502
    assert "Invalid partition name specified" in resp.get_json()["message"]
    record = live_client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()["monitor"]
    assert record["slurm_job_state"] == "SUBMIT_FAILED"
    assert "Invalid partition name specified" in record["error"]["message"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slurmrestd_down_is_503_with_a_submit_failed_record(workdir):
    config = slurm_config(SLURM_BASE_URL=f"http://127.0.0.1:{_closed_port()}",
                          SLURM_API_VERSION="0.0.38")
    client = live(config)[1]
    task = task_in(workdir)
    resp = client.post("/submit", json={"task": task})
    assert resp.status_code == 503
    assert "not reachable" in resp.get_json()["message"]
    body = client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()
    assert body["monitor"]["slurm_job_state"] == "SUBMIT_FAILED"
    assert body["slurm"] is None


def test_lookups_by_uuid_and_job_id_return_record_and_live_state(live_client, workdir):
    task = task_in(workdir, cmd="sleep", params=["30"])
    job_id = live_client.post("/submit", json={"task": task}).get_json()["slurm_job_id"]
    try:
        by_uuid = live_client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()
        by_job = live_client.get(f"/monitor/slurm_job_id/{job_id}").get_json()
        for body in (by_uuid, by_job):
            assert body["monitor"]["task"]["uuid"] == task["uuid"]
            assert body["slurm"]["job_id"] == job_id
            assert body["slurm"]["state"] in {"PENDING", "RUNNING"}
            assert body["slurm"]["comment"] == f"slurm-proxy:{task['uuid']}"
    finally:
        subprocess.run(["scancel", str(job_id)], check=False)


def test_service_token_mode_acts_as_the_user(workdir):
    token = subprocess.run(["scontrol", "token", "username=slurm", "lifespan=600"],
                           capture_output=True, text=True, check=True).stdout.strip()
    config = slurm_config(SLURM_JWT_HS256_KEY_FILE="", SLURM_USER_NAME="slurm",
                          SLURM_USER_TOKEN=token.partition("=")[2])
    client = live(config)[1]
    task = task_in(workdir, cmd="id", params=["-un"])
    assert client.post("/submit", json={"task": task}).status_code == 200
    body = wait_for_final(client, task["uuid"])
    assert body["monitor"]["slurm_job_state"] == "COMPLETED"
    out = f"{workdir}/slurm-proxy-test/output/slurm-proxy-test.generic.output.txt"
    assert open(out).read() == f"{TEST_USER}\n"


def test_bad_token_says_authentication_failed(workdir):
    config = slurm_config(SLURM_JWT_HS256_KEY_FILE="", SLURM_USER_TOKEN="not-a-jwt",
                          SLURM_API_VERSION="0.0.38")
    client = live(config)[1]
    resp = client.post("/submit", json={"task": task_in(workdir)})
    assert resp.status_code == 502
    body = resp.get_json()
    assert "Authentication to slurmrestd failed" in body["message"]
    assert "not-a-jwt" not in resp.get_data(as_text=True)


def test_operator_routes_answer_from_slurmrestd(live_client):
    for path in ("/slurm/ping", "/slurm/diag", "/slurm/jobs", "/slurm/partitions", "/slurm/nodes"):
        resp = live_client.get(path)
        assert resp.status_code == 200, (path, resp.get_json())
        assert resp.get_json()["api_version"] == "0.0.38"
    partitions = live_client.get("/slurm/partitions").get_json()["response"]["partitions"]
    assert PARTITION in {p["name"] for p in partitions}
    assert live_client.get("/slurm/job/999999").status_code == 404


def test_output_is_read_only_from_the_tasks_own_files(workdir):
    app, client = live({**slurm_config(), "SLURM_PROXY_OUTPUT_PREFIXES": "/home/{username}"})
    task = task_in(workdir)
    assert client.post("/submit", json={"task": task}).status_code == 200
    wait_for_final(client, task["uuid"])
    out = client.get(f"/monitor/task_uuid/{task['uuid']}/output?tail=5").get_json()
    assert out["lines"][0].startswith("hello, world! (sent job") and out["stream"] == "stdout"
    path = out["path"]
    os.replace(path, path + ".real")
    os.symlink("/etc/shadow", path)                     # the user plants a link
    resp = client.get(f"/monitor/task_uuid/{task['uuid']}/output")
    assert resp.status_code == 403 and "root:" not in resp.get_data(as_text=True)
    os.remove(path)
    with open(path, "w") as fh:                         # a file the user does not own
        fh.write("not theirs\n")
    resp = client.get(f"/monitor/task_uuid/{task['uuid']}/output")
    assert resp.status_code == 403 and "not theirs" not in resp.get_data(as_text=True)


def test_cluster_summary_reads_the_real_cluster(live_client):
    body = live_client.get("/cluster").get_json()
    (part,) = [p for p in body["partitions"] if p["name"] == PARTITION]
    assert part["state"] == "UP" and part["nodes"]["total"] == 1 and part["cpus"]["total"] == 8
    assert part["cpus"]["idle"] + part["cpus"]["allocated"] + part["cpus"]["down"] == 8
    assert set(part["jobs"]) == {"pending", "running"}


def poll_until_final(app, uuid, timeout=60):
    """Run the real poller until the task's stored state is final."""
    import time as _time

    from app.states import FINAL_STATES
    from app.poller import Poller

    services = app.extensions["slurm_proxy"]
    poller = Poller(services.store, services.slurm, None, interval=1, lost_after=600)
    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        poller.run_once()
        record = services.store.get(uuid)
        if record["slurm_job_state"] in FINAL_STATES:
            return record
        _time.sleep(0.3)
    raise AssertionError(f"{uuid} not final: {services.store.get(uuid)['slurm_job_state']}")


def test_job_array_ends_with_its_worst_element(workdir):
    app, client = live()
    task = task_in(workdir, cmd="exit", params=["$SLURM_ARRAY_TASK_ID"])
    task["slurm"]["array"] = "0-2"
    resp = client.post("/submit", json={"task": task})
    assert resp.status_code == 200, resp.get_json()
    record = poll_until_final(app, task["uuid"])
    assert record["slurm_job_state"] == "FAILED" and record["exit_code"] == 2
    assert record["task"]["slurm"]["array"] == "0-2"
    live_job = client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()["slurm"]
    assert live_job["array_job_id"] == resp.get_json()["slurm_job_id"]


def test_dependency_on_another_task_and_account_pass_through(workdir):
    app, client = live()
    first = task_in(workdir, cmd="sleep", params=["2"])
    assert client.post("/submit", json={"task": first}).status_code == 200
    second = task_in(workdir)
    second["slurm"].update(dependency=f"afterok:{first['uuid']}", account="physics")
    resp = client.post("/submit", json={"task": second})
    assert resp.status_code == 200, resp.get_json()
    waiting = client.get(f"/monitor/task_uuid/{second['uuid']}").get_json()["slurm"]
    assert waiting["state"] == "PENDING" and waiting["state_reason"] == "Dependency"
    first_record = wait_for_final(client, first["uuid"])
    second_record = wait_for_final(client, second["uuid"])
    assert second_record["monitor"]["slurm_job_state"] == "COMPLETED"
    assert second_record["slurm"]["start_time"] >= first_record["slurm"]["end_time"]
    raw = client.get(f"/slurm/job/{second_record['monitor']['slurm_job_id']}").get_json()
    job = raw["response"]["jobs"][0]
    assert job["account"] == "physics"
    assert job["dependency"] in ("", f"afterok:{first_record['monitor']['slurm_job_id']}(unfulfilled)",
                                 f"afterok:{first_record['monitor']['slurm_job_id']}")
    unknown = task_in(workdir)
    unknown["slurm"]["dependency"] = "afterok:123e4567-e89b-12d3-a456-000000000000"
    bad = client.post("/submit", json={"task": unknown})
    assert bad.status_code == 400 and "task.slurm.dependency" in bad.get_json()["errors"]


def test_two_clusters_from_a_clusters_file(workdir, tmp_path):
    token = subprocess.run(["scontrol", "token", "username=slurm", "lifespan=600"],
                           capture_output=True, text=True, check=True).stdout.strip().partition("=")[2]
    (tmp_path / "token").write_text(token + "\n")
    clusters = tmp_path / "clusters.json"
    clusters.write_text(json.dumps({"clusters": [
        {"name": "hpc", "base_url": SLURM_BASE_URL, "jwt_key_file": KEY_FILE},
        {"name": "second", "base_url": SLURM_BASE_URL, "token_file": str(tmp_path / "token"),
         "user_name": "slurm", "api_version": "0.0.38"}]}))
    app, client = live({**slurm_config(), "SLURM_CLUSTERS_FILE": str(clusters)})
    task = task_in(workdir, cluster="second")
    resp = client.post("/submit", json={"task": task})
    assert resp.status_code == 200 and resp.get_json()["cluster"] == "second"
    job_id = resp.get_json()["slurm_job_id"]
    record = poll_until_final(app, task["uuid"])
    assert record["slurm_job_state"] == "COMPLETED" and record["task"]["cluster"] == "second"
    assert client.get(f"/monitor/slurm_job_id/{job_id}?cluster=second").status_code == 200
    assert client.get(f"/monitor/slurm_job_id/{job_id}").status_code == 404     # not on hpc
    ready = client.get("/readyz").get_json()["checks"]["slurmrestd"]
    assert set(ready["clusters"]) == {"hpc", "second"} and ready["ok"]
    summary = client.get("/cluster?cluster=second").get_json()
    assert summary["cluster"] == "second" and summary["partitions"][0]["name"] == PARTITION


def test_the_real_slurmrestd_carries_every_request_on_one_connection(workdir):
    """slurmrestd keeps connections alive: pings, a submit and its cancel all go over
    the one connection the transport opened, and each answer is read whole."""
    from app.batch import build_submission
    from app.config import SlurmAuth
    from app.constants import resolve_task
    from app.schemas.task import SubmitSchema
    from app.slurm.client import SlurmClient
    from app.slurm.transport import Transport

    with open(KEY_FILE, "rb") as fh:
        auth = SlurmAuth("key", "slurm", key=fh.read(), lifespan=600)
    client = SlurmClient(Transport(SLURM_BASE_URL, auth, read_timeout=20), "0.0.38")
    pool = client.transport.pool
    connect, opened = pool.connect, []
    pool.connect = lambda: opened.append(1) or connect()
    assert all(p.up for p in client.ping())
    plan = resolve_task(SubmitSchema().load({"task": task_in(workdir)})["task"])
    job_id = client.submit(build_submission(plan), user=TEST_USER)
    assert client.get_job(job_id, user=TEST_USER).job_id == job_id
    client.cancel(job_id, user=TEST_USER)
    assert all(p.up for p in client.ping())
    assert len(opened) == 1
