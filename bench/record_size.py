"""BSON size of the stored hello-world record (the reference averaged 38 kB).

    .venv/bin/python bench/record_size.py

Submits the reference README's hello-world task through the app (to the real local
Slurm when slurmrestd answers, else to an in-process stand-in that returns a job id),
reads the job until it is final, and prints the record's size at each step.
"""
from __future__ import annotations

import copy
import os
import sys
import time
import uuid

import bson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app import create_app  # noqa: E402
from app.states import TERMINAL_STATES  # noqa: E402
from app.memory_store import MemoryTaskStore  # noqa: E402

HELLO = {
    "uuid": None, "username": os.environ.get("DEV_CLUSTER_USER", "someone"),
    "cwd": "/home/someone", "cmd": "echo",
    "params": ["-e", '"hello, world! (sent job $SLURM_JOB_ID to $SLURM_JOB_USER at `date`)"'],
    "notification": {"methods": ["email"], "params": {"email": {
        "sender": "username@gmail.com", "recipient": "username@gmail.com",
        "subject": "hello-world test job finished!", "body": "hello!"}}},
    "slurm": {"job_name": "slurm-proxy-test.generic", "time": 30, "nodes": 1,
              "ntasks_per_node": 1, "cpus_per_task": 1, "mem": 1000, "partition": "hpcz-test",
              "output": "slurm-proxy-test.generic.output.txt",
              "error": "slurm-proxy-test.generic.error.txt"},
    "name": "generic",
    "dirs": {"parent": "/home/someone/slurm-proxy-test",
             "input": "/home/someone/slurm-proxy-test/input",
             "output": "/home/someone/slurm-proxy-test/output",
             "error": "/home/someone/slurm-proxy-test/error"},
}


def size(store, uuid_: str) -> int:
    return len(bson.encode({"_id": bson.ObjectId(), **store.get(uuid_)}))


def main() -> None:
    store = MemoryTaskStore()
    config = {"SLURM_BASE_URL": os.environ.get("SLURM_BASE_URL", "http://127.0.0.1:6820"),
              "SLURM_JWT_HS256_KEY_FILE": os.environ.get("SLURM_JWT_HS256_KEY_FILE",
                                                         "/etc/slurm/jwt_hs256.key")}
    from app.auth import MemoryKeyStore, new_key

    key, record = new_key("bench", ["*"], ["submit", "read"])
    app = create_app(config, store=store, keys=MemoryKeyStore([record]), environ={})
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    task = copy.deepcopy(HELLO)
    task["uuid"] = str(uuid.uuid4())
    resp = client.post("/submit", json={"task": task})
    if resp.status_code != 200:
        raise SystemExit(f"submit failed ({resp.status_code}): {resp.get_json()['message']}")
    print(f"after submit (PENDING):   {size(store, task['uuid'])} bytes of BSON")
    for _ in range(300):
        body = client.get(f"/monitor/task_uuid/{task['uuid']}").get_json()
        if body["monitor"]["slurm_job_state"] in TERMINAL_STATES:
            break
        time.sleep(0.1)
    print(f"after the job ended ({body['monitor']['slurm_job_state']}): "
          f"{size(store, task['uuid'])} bytes of BSON (target <= 4096; reference ~38 kB)")


if __name__ == "__main__":
    main()
