"""The README's commands, run exactly as printed, against the service its start
command starts (port 5001) and the local cluster."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import pytest

from tests.conftest import ROOT

BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```sh\n(.*?)```", re.S)

pytestmark = pytest.mark.slurm


def readme_blocks() -> dict[str, str]:
    return dict(BLOCK.findall((ROOT / "README.md").read_text()))


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def service():
    if os.geteuid() != 0:
        pytest.skip("the README's commands are for root")
    if port_in_use(5001):
        pytest.skip("port 5001 is busy (a service already runs there: bash scripts/start.sh stop)")
    blocks = readme_blocks()
    started = run(blocks["start"])
    assert started.returncode == 0, started.stdout + started.stderr
    assert "slurm-proxy is up on http://127.0.0.1:5001" in started.stdout
    yield blocks
    run("bash scripts/start.sh stop")


def test_readme_has_the_blocks_this_test_runs():
    assert set(readme_blocks()) == {"start", "hello", "output", "mail", "lookup", "curl",
                                    "monitor", "more", "errors"}


def test_readme_examples_work_as_printed(service):
    blocks = service
    log = (ROOT / "logs" / "service.log").read_text()
    assert "embedded in-memory store" in log and "NOT kept across restarts" in log

    hello = run(blocks["hello"])
    assert hello.returncode == 0, hello.stderr          # wget fails on anything but 2xx
    assert "200 OK" in hello.stderr
    job_id = int(re.search(r'"slurm_job_id":\s*(\d+)', hello.stdout).group(1))

    output = run(blocks["output"])
    assert output.returncode == 0, output.stderr
    assert re.search(rf"^hello, world! \(sent job {job_id} to someone at .+\)$",
                     output.stdout, re.M), output.stdout
    assert ("someone /home/someone/slurm-proxy-test/output/"
            "slurm-proxy-test.generic.output.txt") in output.stdout

    # The hello-world's mail, in the local mail catcher start.sh runs.
    mail = run(blocks["mail"])
    assert mail.returncode == 0, mail.stderr
    assert "Subject: hello-world test job finished!" in mail.stdout
    assert "To: username@gmail.com" in mail.stdout and str(job_id) in mail.stdout
    assert "COMPLETED" in mail.stdout and "hello!" in mail.stdout

    lookup = run(blocks["lookup"])
    assert lookup.returncode == 0, lookup.stderr
    assert len(re.findall(r'"slurm_job_state":\s*"COMPLETED"', lookup.stdout)) == 2
    assert len(re.findall(rf'"job_id":\s*{job_id}\b', lookup.stdout)) == 2

    again = run(blocks["hello"])
    assert again.returncode != 0 and "409" in again.stderr

    curl = run(blocks["curl"])
    assert curl.returncode == 0 and re.search(r'"slurm_job_id":\s*\d+', curl.stdout), curl.stdout

    monitor = run(blocks["monitor"])
    assert monitor.returncode == 0, monitor.stderr
    assert len(re.findall(r'"source":\s*"monitor"', monitor.stdout)) == 2
    assert '"pings"' in monitor.stdout

    more = run(blocks["more"])
    assert more.returncode == 0, more.stderr
    lines = more.stdout.splitlines()
    listed, output, cancelled, waited, cluster = (json.loads(line) for line in lines)
    assert "123e4567-e89b-12d3-a456-426614174000" in {t["uuid"] for t in listed["tasks"]}
    assert output["lines"][-1].startswith(f"hello, world! (sent job {job_id} to someone at")
    assert cancelled["cancel_requested"] is True
    assert waited["monitor"]["slurm_job_state"] == "CANCELLED"
    assert waited["monitor"]["resubmitted_from"] == "123e4567-e89b-12d3-a456-426614174000"
    assert "hpcz-test" in {p["name"] for p in cluster["partitions"]}

    errors = run(blocks["errors"])
    assert errors.returncode == 0
    compact = errors.stdout.replace(" ", "")
    assert "Invalid partition name specified" in errors.stdout and '"status":502' in compact
    assert "task.slurm.mem" in errors.stdout and "task.uuid" in errors.stdout
    assert '"status":401' in compact and "Missing API key" in errors.stdout
    assert '"status":403' in compact and "may not act for user 'other'" in errors.stdout
