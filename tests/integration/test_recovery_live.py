"""slurmrestd SIGKILLed while a job ends: once it is back, the poller records the end
within one poll interval (no backoff). Uses a slurmrestd of its own on a free port, so
the shared one keeps running."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from app.poller import build_poller
from tests.integration.conftest import live, slurm_config, task_in
from tests.integration.peers import free_port
from tests.integration.test_notify_e2e import until

pytestmark = pytest.mark.slurm
INTERVAL = 1.0


def start_slurmrestd(port: int) -> subprocess.Popen:
    if not shutil.which("setpriv") or not os.path.exists("/usr/sbin/slurmrestd"):
        pytest.skip("slurmrestd or setpriv is not installed")
    proc = subprocess.Popen(
        ["setpriv", "--reuid=slurmrest", "--regid=slurmrest", "--init-groups",
         "env", "SLURM_JWT=daemon", "/usr/sbin/slurmrestd", "-a", "rest_auth/jwt",
         "-s", "openapi/v0.0.38", f"127.0.0.1:{port}"],
        cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            return requests.get(f"http://127.0.0.1:{port}/openapi/v3", timeout=1).status_code
        except requests.RequestException:
            return None

    until(up, timeout=20, step=0.05)
    return proc


def test_a_job_that_ended_while_slurmrestd_was_down_is_recorded_within_an_interval(workdir):
    port = free_port()
    rest = start_slurmrestd(port)
    config = {**slurm_config(SLURM_BASE_URL=f"http://127.0.0.1:{port}",
                             SLURM_API_VERSION="0.0.38", SLURM_READ_TIMEOUT=5.0),
              "SLURM_POLL_INTERVAL": INTERVAL, "SLURM_POLL_INTERVAL_WITH_EVENTS": INTERVAL}
    app, client = live(config)
    services = app.extensions["slurm_proxy"]
    poller = build_poller(services.config, store=services.store, slurm=services.slurm)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    try:
        task = task_in(workdir, cmd="sleep", params=["5"])
        body = client.post("/submit", json={"task": task}).get_json()
        job_id = body["slurm_job_id"]
        thread.start()
        until(lambda: services.store.get(task["uuid"])["slurm_job_state"] == "RUNNING",
              timeout=30, step=0.05)
        rest.send_signal(signal.SIGKILL)
        rest.wait(10)
        # The job ends while slurmrestd is down (scontrol speaks to slurmctld itself).
        until(lambda: "JobState=COMPLETED" in subprocess.run(
            ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True).stdout,
              timeout=30, step=0.1)
        time.sleep(2 * INTERVAL)                    # a few failed polls
        assert services.store.get(task["uuid"])["slurm_job_state"] == "RUNNING"
        rest = start_slurmrestd(port)
        back = time.monotonic()
        until(lambda: services.store.get(task["uuid"])["slurm_job_state"] == "COMPLETED",
              timeout=30, step=0.02)
        took = time.monotonic() - back
        # How long slurmrestd takes to list every job (22.05 has nothing finer; seconds
        # on a dev cluster that keeps thousands of finished jobs for MinJobAge).
        started = time.monotonic()
        services.slurm.get(None).get_jobs_since(None)
        listing = time.monotonic() - started
        print(f"recorded {took:.2f} s after slurmrestd was back (a job list takes {listing:.2f} s)")
        # One interval, plus the backoff of a retry in flight (at most 1 s), plus the
        # listing slurmrestd then renders.
        assert took <= INTERVAL + 1.0 + 1.5 * listing, (took, listing)
    finally:
        stop.set()
        rest.kill()
        rest.wait(10)
        thread.join(10)
