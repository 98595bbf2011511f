"""Poller cost per cycle, and how soon people hear that a job ended.

    .venv/bin/python bench/poll.py                 # both parts
    .venv/bin/python bench/poll.py --part cycle    # fake slurmrestd only (no root needed)
    .venv/bin/python bench/poll.py --part delay --jobs 20   # real local Slurm, as root

Part 1 ("cycle"): a fake slurmrestd in its own process serves N jobs (the recorded
22.05 job, N times); the poller watches N active tasks in the embedded store. Prints
slurmrestd requests per cycle and the poller's CPU time per cycle for N = 10, 1,000,
10,000: the first cycle (every task changes state), a cycle where Slurm's answer has
changed but no task's state has (the full list is parsed), and a cycle where slurmrestd
answers 304 (nothing changed since last time).

Part 2 ("delay"): real jobs of different lengths on the local cluster, a real poller
running at the default interval, an aiosmtpd server receiving the mails: the delay
from each job's end (the time its last command wrote, more precise than Slurm's
whole-second end_time) to its mail's arrival, p50/p95.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from app.config import SlurmAuth, load_config  # noqa: E402
from app.memory_store import MemoryTaskStore  # noqa: E402
from app.poller import Poller  # noqa: E402
from app.slurm.client import SlurmClient  # noqa: E402
from app.slurm.transport import Transport  # noqa: E402
from app.tasks import new_record  # noqa: E402

FAKE_SERVER = textwrap.dedent('''
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    template = json.load(open(sys.argv[1]))["jobs"][0]
    state = {"count": 0, "body": b"", "requests": 0, "304": False}
    def build(n, job_state):
        jobs = []
        for i in range(1, n + 1):
            job = dict(template, job_id=i, job_state=job_state, comment="")
            jobs.append(job)
        state["body"] = json.dumps({"meta": {}, "errors": [], "jobs": jobs}).encode()
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            if self.path.startswith("/control"):
                _, n, job_state, not_modified = self.path.split("/")[1:]
                build(int(n), job_state); state["304"] = not_modified == "1"; state["requests"] = 0
                self.send_response(204); self.end_headers(); return
            if self.path.startswith("/count"):
                body = str(state["requests"]).encode()
                self.send_response(200); self.send_header("Content-Length", str(len(body)))
                self.end_headers(); self.wfile.write(body); return
            state["requests"] += 1
            if state["304"] and "update_time=" in self.path:
                self.send_response(304); self.end_headers(); return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers(); self.wfile.write(state["body"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
''')


def cycle_part() -> None:
    fixture = os.path.join(ROOT, "tests", "fixtures", "slurmrestd", "v0.0.38", "jobs.json")
    proc = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, fixture], stdout=subprocess.PIPE,
                            text=True)
    port = int(proc.stdout.readline())
    base = f"http://127.0.0.1:{port}"
    import requests

    session = requests.Session()
    session.trust_env = False

    def control(n, job_state, not_modified=False):
        session.get(f"{base}/control/{n}/{job_state}/{int(not_modified)}", timeout=60)

    def requests_made():
        return int(session.get(f"{base}/count", timeout=5).text)

    template_task = {"uuid": "", "username": "someone", "name": "generic", "cwd": "/tmp",
                     "cmd": "true", "params": [], "slurm": {"output": "o", "error": "e"},
                     "dirs": {"output": "/tmp", "error": "/tmp"},
                     "notification": {"methods": [], "params": {}}}
    print("poller cycle cost (fake slurmrestd in another process, embedded store)")
    print(f"{'tasks':>7s} {'cycle':<32s}{'requests':>9s}{'CPU ms':>10s}{'ms/1000 tasks':>15s}")
    try:
        for n in (10, 1000, 10000):
            store = MemoryTaskStore()
            for i in range(1, n + 1):
                task = dict(copy.deepcopy(template_task), uuid=str(uuid.uuid4()))
                store.insert(new_record(task, state="PENDING", source="submit", job_id=i))
            client = SlurmClient(Transport(base, SlurmAuth("token", "slurm", token="t")), "0.0.38")
            poller = Poller(store, client, None, interval=10, lost_after=600)
            for label, job_state, not_modified in (
                    ("first: every task -> RUNNING", "RUNNING", False),
                    ("answer changed, states did not", "RUNNING", False),
                    ("nothing changed (HTTP 304)", "RUNNING", True)):
                control(n, job_state, not_modified)
                t0 = time.process_time()
                counts = poller.run_once()
                cpu = (time.process_time() - t0) * 1000
                assert counts["active"] == n
                print(f"{n:7d} {label:<32s}{requests_made():9d}{cpu:10.1f}{cpu * 1000 / n:15.1f}")
    finally:
        proc.terminate()


def delay_part(jobs: int, interval: float) -> None:
    from aiosmtpd.controller import Controller

    from app import create_app
    from app.poller import build_poller
    from app.slurm.states import TERMINAL_STATES

    arrivals: dict[str, float] = {}

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            text = envelope.content.decode(errors="replace")
            for line in text.splitlines():
                if line.startswith("Task:"):
                    arrivals[line.split("(")[-1].rstrip(")")] = time.time()
            return "250 OK"

    import socket

    with socket.socket() as sock:                 # aiosmtpd needs a concrete port
        sock.bind(("127.0.0.1", 0))
        smtp_port = sock.getsockname()[1]
    smtp = Controller(Inbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    config = {"SLURM_JWT_HS256_KEY_FILE": os.environ.get("SLURM_JWT_HS256_KEY_FILE",
                                                         "/etc/slurm/jwt_hs256.key"),
              "SLURM_POLL_INTERVAL": interval, "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
              "NOTIFICATIONS_SMTP_PORT": smtp_port, "NOTIFICATIONS_SMTP_SECURITY": "none"}
    from app.auth import MemoryKeyStore, new_key

    store = MemoryTaskStore()
    key, record = new_key("bench", ["*"], ["submit", "read"])
    app = create_app(config, store=store, keys=MemoryKeyStore([record]), environ={})
    services = app.extensions["slurm_proxy"]
    poller = build_poller(load_config({}, config), store=store, slurm=services.slurm)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    home = os.path.expanduser("~someone")
    uuids = []
    for i in range(jobs):
        seconds = 1 + (i * 7919) % 23           # spread job ends over the poll phase
        task = {"uuid": str(uuid.uuid4()), "username": "someone", "cwd": home, "name": "generic",
                # the job's last act: write the time it ends, to the microsecond
                "cmd": "sleep", "params": [str(seconds), "&&", "date", "+%s.%N"],
                "slurm": {"job_name": "slurm-proxy-bench-delay", "time": 2, "mem": 10,
                          "output": f"delay-{i}.out", "error": "delay.err"},
                "dirs": {"output": f"{home}/slurm-proxy-bench", "error": f"{home}/slurm-proxy-bench"},
                "notification": {"methods": ["email"], "params": {"email": {
                    "recipient": "someone@example.org"}}}}
        resp = client.post("/submit", json={"task": task})
        assert resp.status_code == 200, resp.get_json()
        uuids.append(task["uuid"])
    deadline = time.time() + 120
    while time.time() < deadline and len(arrivals) < jobs:
        time.sleep(0.2)
    stop.set()
    smtp.stop()
    delays = []
    for u in uuids:
        record = store.get(u)
        if u in arrivals and record["slurm_job_state"] in TERMINAL_STATES:
            with open(record["outputs"]["stdout"]) as fh:
                ended = float(fh.read().split()[-1])
            delays.append(arrivals[u] - ended)
    delays.sort()
    q = statistics.quantiles(delays, n=20) if len(delays) > 1 else delays * 19
    print(f"job end (the job's own last timestamp) -> mail arrival, {len(delays)} of {jobs} jobs, "
          f"poll interval {interval:.0f} s")
    print(f"p50 {statistics.median(delays):.2f} s   p95 {q[18]:.2f} s   max {max(delays):.2f} s"
          f"   (target p95 <= {interval + 1:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("cycle", "delay", "both"), default="both")
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--interval", type=float, default=load_config({})["SLURM_POLL_INTERVAL"])
    args = ap.parse_args()
    if args.part in ("cycle", "both"):
        cycle_part()
    if args.part in ("delay", "both"):
        delay_part(args.jobs, args.interval)


if __name__ == "__main__":
    main()
