"""Fixtures shared by unit and integration tests.

Store tests run on mongomock, and also on a real MongoDB when ``MONGODB_URI`` names
one (a fresh database per test, dropped afterwards).
"""
from __future__ import annotations

import copy
import os
import pathlib
import threading
import uuid as uuid_module
from dataclasses import replace

import pytest

from app import create_app
from app.auth import ROLES, MemoryKeyStore, new_key
from app.errors import SlurmJobNotFound
from app.slurm.versions import JobInfo, PingInfo
from app.memory_store import MemoryTaskStore
from app.store import TaskStore

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "slurmrestd"

HELLO_TASK = {
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "username": "someone",
    "cwd": "/home/someone",
    "cmd": "echo",
    "params": ["-e", '"hello, world! (sent job $SLURM_JOB_ID to $SLURM_JOB_USER at `date`)"'],
    "notification": {"methods": ["email"], "params": {"email": {
        "sender": "username@gmail.com", "recipient": "username@gmail.com",
        "subject": "hello-world test job finished!", "body": "hello!"}}},
    "slurm": {"job_name": "slurm-proxy-test.generic", "time": 30, "nodes": 1,
              "ntasks_per_node": 1, "cpus_per_task": 1, "mem": 1000,
              "partition": "hpcz-test", "output": "slurm-proxy-test.generic.output.txt",
              "error": "slurm-proxy-test.generic.error.txt"},
    "name": "generic",
    "dirs": {"parent": "/home/someone/slurm-proxy-test",
             "input": "/home/someone/slurm-proxy-test/input",
             "output": "/home/someone/slurm-proxy-test/output",
             "error": "/home/someone/slurm-proxy-test/error"},
}


def hello_task(**overrides):
    task = copy.deepcopy(HELLO_TASK)
    task["uuid"] = str(uuid_module.uuid4())
    task.update(overrides)
    return task


class FakeSlurmClient:
    """Stands in for SlurmClient in unit tests: records submits, serves set jobs."""

    api_version = "0.0.38"

    def __init__(self):
        self.submitted: list[tuple] = []
        self.jobs: dict[int, JobInfo] = {}
        self.fail_with: Exception | None = None
        self.next_id = 1000
        self.lock = threading.Lock()
        self.submit_delay: threading.Event | None = None
        self.cancelled: list[tuple] = []
        self.reads: list[tuple] = []          # (job id, user) of each get_job
        self.db_jobs: dict[int, JobInfo] = {}

    def get_db_job(self, job_id):
        if job_id not in self.db_jobs:
            raise SlurmJobNotFound(f"slurmdb has no job {job_id}.")
        return self.db_jobs[job_id]

    def submit(self, sub, user):
        if self.submit_delay is not None:
            self.submit_delay.wait(2)
        if self.fail_with is not None:
            raise self.fail_with
        with self.lock:
            self.next_id += 1
            self.submitted.append((sub, user))
            job_id = self.next_id
        self.jobs[job_id] = make_job(job_id, "PENDING", name=sub.name, user=user)
        return job_id

    def ping(self):
        return [PingInfo(hostname="fake", up=True, primary=True, latency=100, status=None)]

    def raw(self, what, job_id=None):
        return {"pings": [{"hostname": "fake", "ping": "UP"}]} if what == "ping" else {}

    def cancel(self, job_id, user=None):
        from app.errors import SlurmJobFinished
        self.cancelled.append((job_id, user))
        job = self.jobs.get(job_id)
        if job is None:
            raise SlurmJobNotFound(f"Slurm does not know job {job_id}.")
        if job.is_terminal:
            raise SlurmJobFinished("already finished")
        self.jobs[job_id] = replace(job, state="CANCELLED", state_flags=("COMPLETING",))

    def get_job(self, job_id, user=None):
        self.reads.append((job_id, user))
        if job_id not in self.jobs:
            raise SlurmJobNotFound(f"Slurm does not know job {job_id}.")
        return self.jobs[job_id]

    def set_state(self, job_id, state, **kw):
        self.jobs[job_id] = replace(self.jobs[job_id], state=state, **kw)


def make_job(job_id, state, *, name="job", user="someone", flags=(), exit_code=0):
    return JobInfo(job_id=job_id, name=name, state=state, state_flags=tuple(flags),
                   state_reason=None, exit_code=exit_code, signal=None, user_name=user,
                   partition="hpcz-test", nodes=None, submit_time=None, start_time=None,
                   end_time=None, time_limit=30, standard_output=None,
                   standard_error=None, current_working_directory="/home/someone",
                   comment=None)


STORE_KINDS = ["memory", "mongomock"] + (["mongodb"] if os.environ.get("MONGODB_URI") else [])


@pytest.fixture(params=STORE_KINDS)
def store(request):
    """Every store test runs on the embedded store, on pymongo's code path over
    mongomock, and on a real MongoDB when MONGODB_URI names one."""
    if request.param == "memory":
        yield MemoryTaskStore()
        return
    if request.param == "mongomock":
        yield TaskStore.in_memory()
        return
    uri = os.environ["MONGODB_URI"]
    import pymongo

    client = pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    name = f"slurm_proxy_test_{uuid_module.uuid4().hex[:12]}"
    yield TaskStore(client[name]["tasks"])
    client.drop_database(name)
    client.close()


@pytest.fixture
def fake_slurm():
    return FakeSlurmClient()


def make_keys(**named):
    """A key store holding one key per name: make_keys(admin=("*", ROLES), ...).
    Returns (store, {name: plaintext})."""
    records, plain = [], {}
    for name, (users, roles) in named.items():
        plain[name], record = new_key(name, users if isinstance(users, (list, tuple)) else [users], roles)
        records.append(record)
    return MemoryKeyStore(records), plain


@pytest.fixture
def keys():
    return make_keys(admin=("*", ROLES), someone=(["someone"], ["submit", "read"]),
                     reader=(["someone"], ["read"]), other=(["other"], ROLES))


@pytest.fixture
def app(store, fake_slurm, keys):
    return create_app({}, store=store, slurm=fake_slurm, keys=keys[0], environ={})


def authorized(app, key: str):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


@pytest.fixture
def client(app, keys):
    """A client sending the admin key (users *, every role)."""
    return authorized(app, keys[1]["admin"])
