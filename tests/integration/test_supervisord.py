"""The image's programs, run by the real docker/entrypoint.sh and supervisord.conf
outside a container: gunicorn (two workers) and the poller come up against the local
Slurm, share one store (the wire double), answer /healthz and /readyz, take a submit,
deliver its notification, report it in /metrics and JSON logs, and stop cleanly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pymongo
import pytest
import requests

from app.auth import ROLES, new_key
from app.store import MongoKeyStore
from tests.conftest import ROOT
from tests.integration.conftest import KEY_FILE, SLURM_BASE_URL, task_in
from tests.integration.peers import free_port
from tests.integration.test_notify_e2e import until
from tests.mongo_wire import MongoWireDouble

pytestmark = pytest.mark.slurm


@pytest.fixture
def stack(tmp_path, smtp):
    wire = MongoWireDouble()
    uri = wire.start()
    port = free_port()
    logs = tmp_path / "logs"
    venv_bin = os.path.dirname(os.path.realpath(os.sys.executable))
    env = {**os.environ, "PATH": f"{os.path.dirname(os.sys.executable)}:{venv_bin}:{os.environ['PATH']}",
           "SLURM_PROXY_APP_DIR": str(ROOT), "SLURM_PROXY_LOG_DIR": str(logs),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
           "MONGODB_URI": uri, "SLURM_BASE_URL": SLURM_BASE_URL,
           "SLURM_JWT_HS256_KEY_FILE": KEY_FILE, "SLURM_PROXY_HOST": "127.0.0.1",
           "SLURM_PROXY_PORT": str(port), "GUNICORN_WORKERS": "2", "SLURM_POLL_INTERVAL": "1",
           "SLURM_PROXY_LOG_FORMAT": "json", "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
           "NOTIFICATIONS_SMTP_PORT": str(smtp.port), "NOTIFICATIONS_SMTP_SECURITY": "none",
           "NOTIFICATIONS_SMTP_FROM": "slurm-proxy@cluster.example.org",
           # limits' MongoDB storage needs a real MongoDB; mongomock miscounts its windows
           "SLURM_PROXY_RATE_LIMIT_STORAGE": "memory://"}
    client = pymongo.MongoClient(uri, tz_aware=True)
    plaintext, record = new_key("ops", ["*"], ROLES)
    MongoKeyStore(client["slurm_proxy"]["api_keys"]).add(record)
    proc = subprocess.Popen([str(ROOT / "docker" / "entrypoint.sh")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        yield {"base": base, "key": plaintext, "logs": logs, "proc": proc, "env": env,
               "smtp": smtp, "store": client["slurm_proxy"]["tasks"]}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        wire.stop()


def get(url, **kw):
    try:
        return requests.get(url, timeout=5, **kw)
    except requests.RequestException:
        return None


def test_supervisord_runs_serves_notifies_and_stops(stack, workdir):
    base, headers = stack["base"], {"Authorization": f"Bearer {stack['key']}"}
    until(lambda: (r := get(f"{base}/healthz")) is not None and r.status_code == 200, timeout=30)
    ready = until(lambda: (r := get(f"{base}/readyz")) is not None and r.status_code == 200 and r,
                  timeout=30)
    checks = ready.json()["checks"]
    assert checks["mongodb"] == {"ok": True, "embedded": False}
    assert checks["slurmrestd"]["ok"] and checks["poller"]["ok"]

    def supervisor_status():
        return subprocess.run(["supervisorctl", "-c", str(ROOT / "docker" / "supervisord.conf"),
                               "status"], env=stack["env"], capture_output=True, text=True).stdout

    status = until(lambda: (out := supervisor_status()).count("RUNNING") == 2 and out, timeout=15)
    assert "web" in status and "poller" in status

    task = task_in(workdir)
    task["notification"] = {"methods": ["email"], "params": {"email": {
        "recipient": "someone@example.org", "body": "done!"}}}
    resp = requests.post(f"{base}/submit", json={"task": task}, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    job_id = resp.json()["slurm_job_id"]
    until(lambda: len(stack["smtp"].inbox.messages) == 1, timeout=60)
    mail = stack["smtp"].inbox.messages[0]
    assert f"Slurm job: {job_id}" in mail.get_content() and "COMPLETED" in mail.get_content()

    # any worker sees the poller's work: the store is shared
    for _ in range(4):
        answer = requests.get(f"{base}/monitor/task_uuid/{task['uuid']}", headers=headers,
                              timeout=10)
        assert answer.status_code == 200, answer.text
        record = answer.json()["monitor"]
        assert record["slurm_job_state"] == "COMPLETED"
        assert record["deliveries"][0]["status"] == "sent"

    metrics = requests.get(f"{base}/metrics", headers=headers, timeout=10).text
    assert 'slurm_proxy_submits_total{outcome="ok"} 1.0' in metrics
    assert 'slurm_proxy_deliveries_total{method="email",outcome="sent"} 1.0' in metrics
    assert 'slurm_proxy_state_changes_total{state="COMPLETED"} 1.0' in metrics
    assert "slurm_proxy_poll_cycle_seconds_count" in metrics
    assert "slurm_proxy_slurmrestd_requests_total" in metrics
    assert "slurm_proxy_outbox_backlog 0.0" in metrics
    assert requests.get(f"{base}/metrics", timeout=10).status_code == 401

    # JSON log lines, with the task's uuid and job id as fields
    lines = [json.loads(line) for name in ("poller.err.log", "web.err.log", "web.out.log")
             for line in (stack["logs"] / name).read_text().splitlines() if line.startswith("{")]
    about_task = [entry for entry in lines if entry.get("task_uuid") == task["uuid"]]
    assert any(e.get("slurm_job_id") == job_id and "COMPLETED" in e["message"] for e in about_task)
    assert any("notification sent" in e["message"] for e in about_task)
    for name in ("supervisord.log", "web.out.log", "web.err.log", "poller.err.log"):
        assert (stack["logs"] / name).exists(), name

    started = time.monotonic()
    stack["proc"].send_signal(signal.SIGTERM)
    assert stack["proc"].wait(60) == 0
    assert time.monotonic() - started < 40
    assert get(f"{base}/healthz") is None
