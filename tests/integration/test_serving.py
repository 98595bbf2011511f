"""The serving model under gunicorn's gevent worker: many waiters hold no thread (the
service keeps answering), and a graceful stop ends waits and streams at once instead
of holding the stop for graceful_timeout (30 s)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid as uuid_module

import pytest
import requests

from tests.conftest import ROOT
from tests.integration.conftest import KEY_FILE, SLURM_BASE_URL, TEST_USER
from tests.integration.peers import free_port
from tests.integration.test_notify_e2e import until

pytestmark = pytest.mark.slurm


def test_waiters_hold_no_thread_and_a_graceful_stop_ends_them(tmp_path):
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
    try:
        until(lambda: _up(url), timeout=30)
        uuid = str(uuid_module.uuid4())          # a job nobody will finish during the test
        registered = requests.post(url + "/monitor", headers=auth, timeout=10, json={"monitor": {
            "task": {"uuid": uuid, "username": TEST_USER}, "slurm_job_id": 4_000_000_000}})
        assert registered.status_code == 200, registered.text
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
        assert answers[0].json()["monitor"]["slurm_job_state"] == "PENDING"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def _up(url):
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
