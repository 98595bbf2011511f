"""The command-line client driven as a user would, against a real service (gunicorn,
embedded store, poller thread) on the real cluster."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import KEY_FILE, SLURM_BASE_URL, task_in
from tests.integration.peers import SMTPServer, free_port, healthy
from tests.integration.test_notify_e2e import until

pytestmark = pytest.mark.slurm
CLI = os.path.join(os.path.dirname(sys.executable), "slurm-proxy")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    smtp = SMTPServer()
    smtp.start()
    port = free_port()
    env = {**os.environ, "SLURM_BASE_URL": SLURM_BASE_URL, "SLURM_JWT_HS256_KEY_FILE": KEY_FILE,
           "SLURM_PROXY_PORT": str(port), "SLURM_PROXY_HOST": "127.0.0.1", "MONGODB_URI": "",
           "SLURM_PROXY_API_KEYS_FILE": str(tmp / "keys.json"), "SLURM_POLL_INTERVAL": "1",
           "SLURM_PROXY_OUTPUT_PREFIXES": "/home/{username}",
           "NOTIFICATIONS_SMTP_HOST": "127.0.0.1", "NOTIFICATIONS_SMTP_PORT": str(smtp.port),
           "NOTIFICATIONS_SMTP_SECURITY": "none"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)     # an empty value would mean "this directory"
    key = subprocess.run([sys.executable, "-m", "app.keys", "create", "--name", "cli",
                          "--users", "someone", "--roles", "submit,read,cancel", "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py",
                             "wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    until(lambda: healthy(url), timeout=30)
    yield {"url": url, "key": key, "smtp": smtp, "tmp": tmp}
    proc.terminate()
    proc.wait(30)
    smtp.stop()


def cli(server, *args, stdin=None):
    env = {**os.environ, "SLURM_PROXY_URL": server["url"], "SLURM_PROXY_KEY": server["key"]}
    return subprocess.run([CLI, *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)


def write_task(server, task) -> str:
    path = server["tmp"] / f"{task['uuid']}.json"
    path.write_text(json.dumps({"task": task}))
    return str(path)


def test_submit_wait_exits_with_the_jobs_exit_code(server, workdir):
    failing = task_in(workdir, cmd="exit", params=["3"])
    run = cli(server, "submit", write_task(server, failing), "--wait")
    assert run.returncode == 3, run.stdout + run.stderr
    assert f"{failing['uuid']} submitted as Slurm job" in run.stdout
    assert re.search(r"FAILED exit 3", run.stdout)
    assert "PENDING" in run.stderr or "RUNNING" in run.stderr or "FAILED" in run.stderr

    hello = task_in(workdir)
    del hello["uuid"]                                      # the client makes one up
    run = cli(server, "submit", "-", "--wait", stdin=json.dumps(hello))
    assert run.returncode == 0, run.stdout + run.stderr
    uuid = re.search(r"^([0-9a-f-]{36}) submitted", run.stdout, re.M).group(1)
    out = cli(server, "output", uuid)
    assert out.returncode == 0 and re.match(r"hello, world! \(sent job \d+ to someone at", out.stdout)
    assert cli(server, "output", uuid, "--stream", "stderr").stdout == "\n"
    status = cli(server, "status", uuid)
    assert status.returncode == 0 and "COMPLETED exit 0" in status.stdout
    job_id = int(re.search(r"job (\d+)", status.stdout).group(1))
    by_job = cli(server, "--json", "status", "--job-id", str(job_id))
    assert json.loads(by_job.stdout)["monitor"]["task"]["uuid"] == uuid

    listed = json.loads(cli(server, "--json", "list").stdout)["tasks"]
    assert {failing["uuid"], uuid} <= {t["uuid"] for t in listed}
    failed_only = cli(server, "list", "--state", "FAILED").stdout
    assert failing["uuid"] in failed_only and uuid not in failed_only

    again = cli(server, "resubmit", failing["uuid"], "--set", 'params=["0"]', "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"again from {failing['uuid']}" in again.stdout


def test_cancel_from_the_cli_is_reported_like_any_end(server, workdir):
    task = task_in(workdir, cmd="sleep", params=["120"])
    task["notification"] = {"methods": ["email"], "params": {"email": {"recipient": "someone@example.org"}}}
    assert cli(server, "submit", write_task(server, task)).returncode == 0
    until(lambda: "RUNNING" in cli(server, "status", task["uuid"]).stdout, timeout=30)
    cancelled = cli(server, "cancel", task["uuid"])
    assert cancelled.returncode == 0 and "cancel of Slurm job" in cancelled.stdout
    final = cli(server, "status", task["uuid"], "--wait", "30")
    assert "CANCELLED" in final.stdout, final.stdout
    until(lambda: any("CANCELLED" in m.get_content() for m in server["smtp"].inbox.messages), timeout=30)
    again = cli(server, "cancel", task["uuid"])
    assert again.returncode == 1 and "already finished (CANCELLED)" in again.stderr


def test_cluster_and_errors(server):
    run = cli(server, "cluster")
    assert run.returncode == 0 and re.search(r"hpcz-test\s+UP\s+nodes .* / 1 .*cpus .* / 8", run.stdout), run.stdout
    missing = cli(server, "status", "123e4567-e89b-12d3-a456-000000000000")
    assert missing.returncode == 1 and "No task with uuid" in missing.stderr
    assert cli(server, "status").returncode == 2                 # usage
    bad_key = subprocess.run([CLI, "--url", server["url"], "--key", "sp_000000000000_" + "x" * 40,
                              "list"], capture_output=True, text=True)
    assert bad_key.returncode == 1 and "Invalid or revoked API key" in bad_key.stderr


def test_wait_shows_each_state_as_it_happens(server, workdir):
    """--wait follows the task's event stream: PENDING, RUNNING and the end, in order,
    each printed when the service records it (the poller polls every second here)."""
    task = task_in(workdir, cmd="sleep", params=["3"])
    run = cli(server, "submit", write_task(server, task), "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    states = re.findall(r"^\d\d:\d\d:\d\d \S+ job \d+: (\w+)$", run.stderr, re.M)
    assert states == ["PENDING", "RUNNING", "COMPLETED"], run.stderr
    assert "COMPLETED exit 0" in run.stdout
    later = cli(server, "status", task["uuid"], "--wait", "10")
    assert later.returncode == 0 and "COMPLETED exit 0" in later.stdout
