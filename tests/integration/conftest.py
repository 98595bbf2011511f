"""Integration fixtures: the real local Slurm (scripts/dev-cluster.sh start).

Skips with a one-line reason naming what is missing when run where it is absent.
"""
from __future__ import annotations

import os
import pwd
import shutil
import time
import uuid as uuid_module

import pytest
import requests

from app import create_app
from app.auth import ROLES, new_key
from app.memory_store import MemoryTaskStore
from app.states import TERMINAL_STATES
from tests.conftest import authorized, make_keys
from tests.integration.peers import rabbitmq, smtp  # noqa: F401 - fixtures for every test here
from tests.mongo_wire import MongoWireDouble

SLURM_BASE_URL = os.environ.get("SLURM_BASE_URL", "http://127.0.0.1:6820")
KEY_FILE = os.environ.get("SLURM_JWT_HS256_KEY_FILE", "/etc/slurm/jwt_hs256.key")
TEST_USER = os.environ.get("DEV_CLUSTER_USER", "someone")
PARTITION = os.environ.get("DEV_CLUSTER_PARTITION", "hpcz-test")


def _why_unavailable() -> str | None:
    try:
        requests.get(SLURM_BASE_URL + "/openapi/v3", timeout=2)
    except requests.RequestException:
        return f"no slurmrestd at {SLURM_BASE_URL} (run scripts/dev-cluster.sh start)"
    if not os.access(KEY_FILE, os.R_OK):
        return f"cannot read the cluster's JWT key {KEY_FILE} (run as root)"
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        return f"no user {TEST_USER!r} on this machine (run scripts/dev-cluster.sh install)"
    return None


def pytest_collection_modifyitems(config, items):
    """Everything here is an integration test; those marked ``slurm`` need the local
    cluster and skip, with the reason, where it is absent."""
    reason, checked = None, False
    for item in items:
        if "integration" not in str(item.fspath):
            continue
        item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("slurm") is None:
            continue
        if not checked:
            reason, checked = _why_unavailable(), True
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def slurm_config(**extra):
    return {"SLURM_BASE_URL": SLURM_BASE_URL, "SLURM_API_VERSION": "auto",
            "SLURM_JWT_HS256_KEY_FILE": KEY_FILE, "SLURM_READ_TIMEOUT": 20.0, **extra}


def live(config=None, **kw):
    """An app on the real cluster with an admin key, and a client sending it."""
    keys = kw.pop("keys", None) or make_keys()[0]
    plaintext, record = new_key("admin", ["*"], ROLES)
    keys.add(record)
    app = create_app(config or slurm_config(), store=kw.pop("store", None) or MemoryTaskStore(),
                     keys=keys, environ={}, **kw)
    return app, authorized(app, plaintext)


@pytest.fixture
def live_app():
    return live()[0]


@pytest.fixture
def live_client(live_app):
    keys = live_app.extensions["slurm_proxy"].keys
    plaintext, record = new_key("admin-client", ["*"], ROLES)
    keys.add(record)
    return authorized(live_app, plaintext)


@pytest.fixture
def workdir():
    """A fresh directory tree owned by the test user, removed afterwards."""
    user = pwd.getpwnam(TEST_USER)
    root = os.path.join(user.pw_dir, "slurm-proxy-tests", uuid_module.uuid4().hex[:12])
    os.makedirs(root)
    for path in (os.path.dirname(root), root):
        os.chown(path, user.pw_uid, user.pw_gid)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def task_in(workdir: str, **overrides) -> dict:
    task = {
        "uuid": str(uuid_module.uuid4()),
        "username": TEST_USER,
        "cwd": workdir,
        "name": "generic",
        "cmd": "echo",
        "params": ["-e", '"hello, world! (sent job $SLURM_JOB_ID to $SLURM_JOB_USER at `date`)"'],
        "slurm": {"job_name": "slurm-proxy-test.generic", "time": 30, "nodes": 1,
                  "ntasks_per_node": 1, "cpus_per_task": 1, "mem": 1000,
                  "partition": PARTITION, "output": "slurm-proxy-test.generic.output.txt",
                  "error": "slurm-proxy-test.generic.error.txt"},
        "dirs": {"parent": f"{workdir}/slurm-proxy-test",
                 "input": f"{workdir}/slurm-proxy-test/input",
                 "output": f"{workdir}/slurm-proxy-test/output",
                 "error": f"{workdir}/slurm-proxy-test/error"},
    }
    task.update(overrides)
    return task


def wait_for_final(client, uuid: str, timeout: float = 60.0) -> dict:
    """Read the task through the API until its stored state is final."""
    deadline = time.monotonic() + timeout
    body = {}
    while time.monotonic() < deadline:
        body = client.get(f"/monitor/task_uuid/{uuid}").get_json()
        if body["monitor"]["slurm_job_state"] in TERMINAL_STATES:
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {uuid} not final after {timeout}s: {body}")


@pytest.fixture
def wire():
    """A MongoDB wire double that several processes share (tests/mongo_wire.py)."""
    server = MongoWireDouble()
    uri = server.start()
    yield uri
    server.stop()
