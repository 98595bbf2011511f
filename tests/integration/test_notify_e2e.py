"""Jobs end, people and programs hear of it exactly once: end to end on the real
cluster, and under faults (peer down, broker restarted, poller SIGKILLed, two pollers)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pymongo
import pytest
from werkzeug import Response

from app.memory_store import MemoryTaskStore
from app.notify import build_notifiers
from app.notify.dispatcher import Dispatcher
from app.notify.webhook import SIGNATURE_HEADER, verify
from app.poller import Poller, build_poller
from app.store import TaskStore
from tests.conftest import ROOT, FIXTURES, make_job
from tests.helpers import Clock, PollSlurm, add_task
from tests.integration.conftest import live, slurm_config, task_in
from tests.integration.peers import BlackHole, SMTPServer, drain, notify_config


def until(condition, timeout=30.0, step=0.1):
    """Wait for real processes (a Slurm job, a subprocess); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout}s: {condition}")


@pytest.mark.slurm
def test_hello_world_yields_exactly_one_message_per_method(workdir, smtp, rabbitmq, httpserver):
    secret = "e2e-webhook-secret"
    hooks = []
    httpserver.expect_request("/api/chat.postMessage").respond_with_json({"ok": True, "ts": "1"})
    httpserver.expect_request("/hook").respond_with_handler(lambda r: (
        hooks.append((verify(secret, r.headers[SIGNATURE_HEADER], r.get_data()), r.get_json()))
        or Response("", status=204)))
    config = notify_config(smtp_port=smtp.port, rabbit=rabbitmq,
                           slack_url=httpserver.url_for("/api/"), webhook_secret=secret)
    live_app, live_client = live({**slurm_config(), **{
        k: v for k, v in config.items() if k.startswith("NOTIFICATIONS_WEBHOOK")}})
    task = task_in(workdir)
    task["notification"] = {"methods": ["email", "slack", "rabbithq", "webhook"], "params": {
        "email": {"recipient": "someone@example.org", "subject": "hello-world test job finished!",
                  "body": "hello!", "sender": "username@example.org"},
        "slack": {"channel": "#jobs", "msg": "slack words"},
        "rabbithq": {"msg": "rabbit words"},
        "webhook": {"url": httpserver.url_for("/hook"), "msg": "hook words"}}}
    job_id = live_client.post("/submit", json={"task": task}).get_json()["slurm_job_id"]
    services = live_app.extensions["slurm_proxy"]
    poller = build_poller(config, store=services.store, slurm=services.slurm)

    def all_sent():
        poller.run_once()
        record = services.store.get(task["uuid"])
        deliveries = record.get("deliveries", [])
        return record if deliveries and all(d["status"] == "sent" for d in deliveries) else None

    record = until(all_sent, timeout=60, step=0.3)
    assert record["slurm_job_state"] == "COMPLETED" and record["exit_code"] == 0
    assert sorted(d["method"] for d in record["deliveries"]) == ["email", "rabbitmq", "slack", "webhook"]
    for _ in range(3):
        poller.run_once()
    out = f"{workdir}/slurm-proxy-test/output/slurm-proxy-test.generic.output.txt"

    (mail,) = smtp.inbox.messages
    body = mail.get_content()
    assert mail["Subject"] == "hello-world test job finished!"
    for fact in (str(job_id), task["uuid"], "COMPLETED", "Exit code: 0", out, "hello!"):
        assert fact in body, fact
    slack_posts = [r for r, _ in httpserver.log if r.path == "/api/chat.postMessage"]
    assert len(slack_posts) == 1
    slack_text = (slack_posts[0].get_json() or slack_posts[0].form)["text"]
    assert "slack words" in slack_text and f"Slurm job: {job_id}" in slack_text
    ((props, raw),) = drain(rabbitmq["queue"])
    message = json.loads(raw)
    assert props.delivery_mode == 2
    assert (message["state"], message["slurm_job_id"], message["message"]) == (
        "COMPLETED", job_id, "rabbit words")
    ((signed, hook),) = hooks
    assert signed and hook["state"] == "COMPLETED" and hook["stdout"] == out
    ids = {d["method"]: d["id"] for d in record["deliveries"]}
    assert props.message_id == ids["rabbitmq"] and hook["delivery_id"] == ids["webhook"]
    assert mail["Message-ID"].startswith(f"<{ids['email']}@")


def make_poller(store, notifiers, clock, slurm):
    dispatcher = Dispatcher(store, notifiers, clock=clock, rng=lambda: 1.0, backoff=10,
                            lease=60, max_attempts=8)
    return Poller(store, slurm, dispatcher, interval=10, lost_after=300, clock=clock)


def test_smtp_down_for_a_few_cycles_then_back_delivers_once():
    server = SMTPServer()
    store, clock, slurm = MemoryTaskStore(), Clock(), PollSlurm()
    notifiers = build_notifiers(notify_config(smtp_port=server.port))
    poller = make_poller(store, notifiers, clock, slurm)
    uuid = add_task(store, 1)
    slurm.jobs[1] = make_job(1, "COMPLETED")
    for _ in range(3):                                   # SMTP is down
        poller.run_once()
        clock.advance(60)
    delivery = store.get(uuid)["deliveries"][0]
    assert delivery["status"] == "pending" and delivery["attempts"] == 3
    assert "not usable" in delivery["last_error"]
    server.start()                                       # back
    try:
        for _ in range(4):
            poller.run_once()
            clock.advance(120)
        assert len(server.inbox.messages) == 1
        delivery = store.get(uuid)["deliveries"][0]
        assert (delivery["status"], delivery["attempts"]) == ("sent", 4)
    finally:
        server.stop()


def test_rabbitmq_restarted_mid_run_delivers_once(rabbitmq):
    store, clock, slurm = MemoryTaskStore(), Clock(), PollSlurm()
    poller = make_poller(store, build_notifiers(notify_config(rabbit=rabbitmq)), clock, slurm)
    first = add_task(store, 1, methods=("rabbitmq",))
    second = add_task(store, 2, methods=("rabbitmq",))
    slurm.jobs[1] = make_job(1, "COMPLETED")
    poller.run_once()
    assert store.get(first)["deliveries"][0]["status"] == "sent"
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, capture_output=True)
    try:
        slurm.jobs[2] = make_job(2, "FAILED", exit_code=1)
        poller.run_once()
        assert store.get(second)["deliveries"][0]["status"] == "pending"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, capture_output=True)
    clock.advance(20)
    poller.run_once()
    poller.run_once()
    messages = drain(rabbitmq["queue"])                  # durable queue kept the first one
    assert sorted(json.loads(body)["slurm_job_id"] for _, body in messages) == [1, 2]
    assert {p.message_id for p, _ in messages} == {
        store.get(first)["deliveries"][0]["id"], store.get(second)["deliveries"][0]["id"]}


def test_a_failing_method_on_one_task_never_stops_another_tasks_mail(smtp, httpserver):
    httpserver.expect_request("/hook").respond_with_data("", status=500)
    store, clock, slurm = MemoryTaskStore(), Clock(), PollSlurm()
    notifiers = build_notifiers(notify_config(smtp_port=smtp.port, webhook_secret="s"))
    poller = make_poller(store, notifiers, clock, slurm)
    broken = add_task(store, 1, methods=("webhook",), webhook_url=httpserver.url_for("/hook"))
    fine = add_task(store, 2, methods=("email",))
    slurm.jobs[1] = make_job(1, "COMPLETED")
    slurm.jobs[2] = make_job(2, "COMPLETED")
    poller.run_once()
    assert len(smtp.inbox.messages) == 1
    assert store.get(fine)["deliveries"][0]["status"] == "sent"
    assert "HTTP 500" in store.get(broken)["deliveries"][0]["last_error"]


# -- real processes sharing one store through the wire double ----------------------

@pytest.fixture
def fake_slurmrestd(httpserver):
    """A slurmrestd answering GET /jobs with the recorded 22.05 answer."""
    jobs = json.loads((FIXTURES / "slurm-22.05" / "v0.0.38" / "jobs.json").read_text())
    httpserver.expect_request("/slurm/v0.0.38/jobs").respond_with_json(jobs)
    completed = [j["job_id"] for j in jobs["jobs"] if j["job_state"] == "COMPLETED"]
    return httpserver.url_for("/").rstrip("/"), completed


def start_poller(uri, slurm_url, smtp_port, **extra) -> subprocess.Popen:
    env = {**os.environ, "MONGODB_URI": uri, "SLURM_BASE_URL": slurm_url,
           "SLURM_API_VERSION": "0.0.38", "SLURM_USER_TOKEN": "service-token",
           "SLURM_JWT_HS256_KEY_FILE": "", "SLURM_POLL_INTERVAL": "0.3",
           "NOTIFICATIONS_SMTP_HOST": "127.0.0.1", "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
           "NOTIFICATIONS_SMTP_SECURITY": "none", "NOTIFICATIONS_TIMEOUT": "30",
           "NOTIFICATIONS_SMTP_FROM": "slurm-proxy@cluster.example.org", **extra}
    return subprocess.Popen([sys.executable, "-m", "app.poller"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wire_store(uri) -> TaskStore:
    client = pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    return TaskStore(client["slurm_proxy"]["tasks"])


def test_poller_killed_between_saving_a_state_and_sending_delivers_once_after_restart(
        wire, fake_slurmrestd, smtp):
    slurm_url, completed = fake_slurmrestd
    store = wire_store(wire)
    uuid = add_task(store, completed[0])
    hole = BlackHole()                     # an SMTP server that never answers
    first = start_poller(wire, slurm_url, hole.port, NOTIFICATIONS_LEASE_SECONDS="2")
    try:
        # The poller saves COMPLETED with its delivery, claims it, and hangs sending.
        until(lambda: hole.accepted.is_set() and store.get(uuid)["deliveries"][0]["status"] == "sending")
        assert store.get(uuid)["slurm_job_state"] == "COMPLETED"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
        hole.close()
    assert smtp.inbox.messages == []
    second = start_poller(wire, slurm_url, smtp.port)
    try:
        until(lambda: store.get(uuid)["deliveries"][0]["status"] == "sent")
        time.sleep(1.0)                    # a few more cycles: nothing more is sent
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0        # SIGTERM stops it cleanly
    (mail,) = smtp.inbox.messages
    delivery = store.get(uuid)["deliveries"][0]
    assert delivery["attempts"] == 2 and mail["Message-ID"].startswith(f"<{delivery['id']}@")
    assert [h["state"] for h in store.get(uuid)["history"]] == ["PENDING", "COMPLETED"]


def test_two_poller_processes_at_once_send_no_duplicates(wire, fake_slurmrestd, smtp):
    slurm_url, completed = fake_slurmrestd
    store = wire_store(wire)
    uuids = [add_task(store, job_id) for job_id in completed]
    pollers = [start_poller(wire, slurm_url, smtp.port) for _ in range(2)]
    try:
        until(lambda: all(d["status"] == "sent" for u in uuids
                          for d in store.get(u)["deliveries"]) if all(
            store.get(u).get("deliveries") for u in uuids) else False)
        time.sleep(1.0)
    finally:
        for p in pollers:
            p.send_signal(signal.SIGTERM)
        for p in pollers:
            p.wait(15)
    assert len(smtp.inbox.messages) == len(uuids)
    assert len({m["Message-ID"] for m in smtp.inbox.messages}) == len(uuids)
    for uuid in uuids:
        assert [h["state"] for h in store.get(uuid)["history"]] == ["PENDING", "COMPLETED"]
