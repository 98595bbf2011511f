"""One wiring (``services.build``) for the web app, the poller program and the key
command, and one MongoClient per process: a key made by the key command and a task
submitted through the web app land in the same MongoDB, each program opening one
client for everything it keeps there."""
from __future__ import annotations

import pymongo
import pytest

from app import create_app, services
from app.config import load_config
from app.constants import resolve_task
from app.keys import main as keys_main
from app.poller import build_poller
from app.tasks import new_record
from tests.conftest import authorized, hello_task
from tests.mongo_wire import MongoWireDouble


@pytest.fixture
def wire():
    double = MongoWireDouble()
    double.start()
    yield double
    double.stop()


@pytest.fixture
def clients_made(monkeypatch):
    """Every pymongo.MongoClient made while the test runs."""
    made = []
    real_init = pymongo.MongoClient.__init__

    def init(self, *args, **kwargs):
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(pymongo.MongoClient, "__init__", init)
    yield made
    for client in made:
        client.close()


def settings(uri):
    # Limits in memory: counting them in MongoDB has a test of its own (the last).
    return {"MONGODB_URI": uri, "SLURM_PROXY_RATE_LIMIT_STORAGE": "memory://"}


def test_key_command_and_web_app_each_open_one_client_and_share_the_store(
        wire, clients_made, monkeypatch, capsys, fake_slurm):
    for name, value in settings(wire.uri).items():
        monkeypatch.setenv(name, value)
    assert keys_main(["create", "--name", "ci", "--users", "someone", "--roles",
                      "submit,read", "--quiet"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(clients_made) == 1                      # the key command's one client

    clients_made.clear()
    app = create_app(settings(wire.uri), slurm=fake_slurm, environ={})
    parts = app.extensions["slurm_proxy"]
    assert len(clients_made) == 1
    assert parts.mongo is clients_made[0]
    assert parts.store.collection.database.client is parts.mongo
    assert parts.keys.collection.database.client is parts.mongo

    web = authorized(app, key)                         # the key command's key works here
    task = hello_task()
    assert web.post("/submit", json={"task": task}).status_code == 200
    assert web.get(f"/monitor/task_uuid/{task['uuid']}").status_code == 200
    assert len(clients_made) == 1                      # requests open none
    assert wire.client["slurm_proxy"]["tasks"].count_documents({"task.uuid": task["uuid"]}) == 1


def test_poller_program_opens_one_client_and_sees_the_web_apps_tasks(wire, clients_made, fake_slurm):
    app = create_app(settings(wire.uri), slurm=fake_slurm, environ={})
    task = hello_task()
    app.extensions["slurm_proxy"].store.insert(_record(task))
    clients_made.clear()
    poller = build_poller(load_config({}, settings(wire.uri)), slurm=fake_slurm, notifiers={})
    assert len(clients_made) == 1
    assert task["uuid"] in {r["task"]["uuid"] for r in poller.store.active_tasks()}


def test_given_parts_are_used_as_they_are_and_open_nothing(clients_made, store, fake_slurm):
    built = services.build({"MONGODB_URI": "mongodb://127.0.0.1:1", "SLURM_CLUSTER_NAME": "x"},
                           services.POLLER, store=store, slurm=fake_slurm, notifiers={})
    assert clients_made == [] and built.store is store and built.keys is None
    assert built.slurm.get("x") is fake_slurm


def _record(task):
    return new_record(resolve_task(task), state="PENDING", source="submit", job_id=1001)


def test_rate_limits_in_mongodb_count_through_the_process_client(wire, clients_made, fake_slurm):
    """Limits counted in the service's own MongoDB (no SLURM_PROXY_RATE_LIMIT_STORAGE)
    use the process's one client: the counts land in its ``limits`` database, and
    requests open no client of their own."""
    config = {"MONGODB_URI": wire.uri, "SLURM_PROXY_RATE_LIMIT": "100/minute"}
    app = create_app(config, slurm=fake_slurm, environ={})
    parts = app.extensions["slurm_proxy"]
    from app.auth import new_key
    key, record = new_key("ci", ["someone"], ["submit", "read"])
    parts.keys.add(record)
    web = authorized(app, key)
    answer = web.post("/submit", json={"task": hello_task()})
    assert answer.status_code == 200 and answer.headers["X-RateLimit-Remaining"] == "99"
    assert web.get("/monitor/task_uuid/x").headers["X-RateLimit-Remaining"] == "99"  # per route
    assert len(clients_made) == 1 and parts.mongo is clients_made[0]
    windows = wire.client["limits"]["windows"]
    assert {d["_id"] for d in windows.find()} == {
        f"LIMITER/key:{record['id']}/submit.submit/100/1/minute",
        f"LIMITER/key:{record['id']}/monitor.by_uuid/100/1/minute"}
