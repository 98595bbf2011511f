"""The serving model under gunicorn's gevent worker: many waiters hold no thread (the
service keeps answering), and a graceful stop ends waits and streams at once instead
of holding the stop for graceful_timeout (30 s)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.conftest import ROOT
from tests.integration.conftest import KEY_FILE, SLURM_BASE_URL, TEST_USER, task_in
from tests.integration.peers import free_port, healthy
from tests.integration.test_notify_e2e import until

pytestmark = pytest.mark.slurm


def test_waiters_hold_no_thread_and_a_graceful_stop_ends_them(tmp_path, workdir):
    port = free_port()
    env = {**os.environ, "SLURM_BASE_URL": SLURM_BASE_URL, "SLURM_JWT_HS256_KEY_FILE": KEY_FILE,
           "SLURM_PROXY_PORT": str(port), "SLURM_PROXY_HOST": "127.0.0.1", "MONGODB_URI": "",
           "SLURM_PROXY_API_KEYS_FILE": str(tmp_path / "keys.json"), "SLURM_PROXY_RATE_LIMIT": ""}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("GUNICORN_WORKER_CLASS", None)
    key = subprocess.run([sys.executable, "-m", "app.keys", "create", "--name", "t", "--users",
                          TEST_USER, "--roles", "submit,read", "--quiet"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py",
                             "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    job_id = None
    try:
        until(lambda: healthy(url), timeout=30)
        # A real job of the key's user that will not finish during the test (a task
        # may only be about its own user's job, so no made-up job id).
        submitted = requests.post(url + "/submit", headers=auth, timeout=10, json={
            "task": task_in(workdir, cmd="sleep", params=["300"])})
        assert submitted.status_code == 200, submitted.text
        uuid, job_id = submitted.json()["uuid"], submitted.json()["slurm_job_id"]
        # 50 waiters, more than the old default's 8 threads, and the service still answers.
        answers: list = []

        def long_poll():
            answers.append(requests.get(f"{url}/monitor/task_uuid/{uuid}?wait=60", headers=auth,
                                        timeout=90))

        pollers = [threading.Thread(target=long_poll) for _ in range(25)]
        for t in pollers:
            t.start()
        streams = [requests.get(f"{url}/monitor/task_uuid/{uuid}/events", headers=auth, stream=True,
                                timeout=(5, 90)) for _ in range(25)]
        assert all(s.status_code == 200 for s in streams)
        first = [next(s.iter_lines(decode_unicode=True)) for s in streams]
        assert all(line == "retry: 2000" for line in first)
        started = time.monotonic()
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        assert requests.get(f"{url}/monitor/task_uuid/{uuid}", headers=auth, timeout=5).status_code == 200
        assert time.monotonic() - started < 2
        assert answers == []                                       # all still waiting
        # SIGTERM: waits answer with the record as it is, streams end, gunicorn exits.
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for s in streams:
            list(s.iter_lines())                                   # returns once the stream ends
        for t in pollers:
            t.join(20)
        assert proc.wait(20) == 0
        assert time.monotonic() - stopping < 10                    # not graceful_timeout (30 s)
        assert len(answers) == 25 and all(a.status_code == 200 for a in answers)
        assert answers[0].json()["monitor"]["slurm_job_state"] in ("PENDING", "RUNNING")
    finally:
        if job_id is not None:
            subprocess.run(["scancel", str(job_id)], check=False)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


class CountingWire:
    """The test MongoDB wire server, counting the change feed's queries."""

    def __init__(self):
        from tests.mongo_wire import MongoWireDouble

        self.double = MongoWireDouble()
        self.feed_queries = 0
        run = self.double._run

        def counting(name, doc, db):
            if name == "find" and "updated_at" in (doc.get("filter") or {}):
                self.feed_queries += 1
            return run(name, doc, db)

        self.double._run = counting


def test_two_workers_on_mongodb_wake_their_waiters_with_one_query_each_per_half_second(tmp_path):
    """Several processes on one MongoDB: another process (here the test, as the poller
    would) records the changes; each gunicorn worker's one watcher wakes all of its
    waiters, asking the store at most twice a second however many wait."""
    import pymongo

    from app.store import TaskStore
    from app.tasks import new_record
    from tests.conftest import hello_task

    wire = CountingWire()
    uri = wire.double.start()
    port = free_port()
    env = {**os.environ, "SLURM_BASE_URL": SLURM_BASE_URL, "SLURM_JWT_HS256_KEY_FILE": KEY_FILE,
           "SLURM_PROXY_PORT": str(port), "SLURM_PROXY_HOST": "127.0.0.1", "MONGODB_URI": uri,
           "GUNICORN_WORKERS": "2", "SLURM_PROXY_RATE_LIMIT": "", "SLURM_PROXY_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("GUNICORN_WORKER_CLASS", None)
    key = subprocess.run([sys.executable, "-m", "app.keys", "create", "--name", "t", "--users",
                          TEST_USER, "--roles", "read", "--quiet"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    store = TaskStore(pymongo.MongoClient(uri, tz_aware=True)["slurm_proxy"]["tasks"])
    record = new_record(hello_task(), state="PENDING", source="monitor", job_id=4_000_000_001)
    store.insert(record)
    uuid = record["task"]["uuid"]
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py",
                             "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    answers: list = []
    try:
        until(lambda: healthy(url), timeout=30)

        def long_poll():
            answers.append(requests.get(f"{url}/monitor/task_uuid/{uuid}?wait=30", headers=auth,
                                        timeout=60).json()["monitor"]["slurm_job_state"])

        pollers = [threading.Thread(target=long_poll) for _ in range(30)]
        for t in pollers:
            t.start()
        streams = [requests.get(f"{url}/monitor/task_uuid/{uuid}/events", headers=auth, stream=True,
                                timeout=(5, 60)) for _ in range(30)]
        lines = [s.iter_lines(decode_unicode=True) for s in streams]

        def next_state(it):
            for line in it:
                if line.startswith("data: {"):
                    return json.loads(line[6:])["slurm_job_state"]
            return None

        assert {next_state(it) for it in lines} == {"PENDING"}
        time.sleep(1.0)
        before, started = wire.feed_queries, time.monotonic()
        time.sleep(3.0)
        per_second = (wire.feed_queries - before) / (time.monotonic() - started)
        print(f"change-feed queries per second, 2 workers, 60 waiters: {per_second:.1f}")
        assert 0 < per_second <= 2 * 2 + 1                 # two workers, 60 waiters
        store.update_state(uuid, state="RUNNING", expected="PENDING")
        changed = time.monotonic()
        assert {next_state(it) for it in lines} == {"RUNNING"}
        assert time.monotonic() - changed < 3
        assert answers == []
        store.update_state(uuid, state="COMPLETED", expected="RUNNING", fields={"exit_code": 0})
        assert {next_state(it) for it in lines} == {"COMPLETED"}
        for t in pollers:
            t.join(10)
        assert answers == ["COMPLETED"] * 30
    finally:
        proc.terminate()
        proc.wait(40)
        log.close()
        wire.double.stop()
