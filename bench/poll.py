"""Poller cost per cycle, and how soon people hear that a job ended.

    .venv/bin/python bench/poll.py                 # both parts
    .venv/bin/python bench/poll.py --part cycle    # fake slurmrestd only (no root needed)
    .venv/bin/python bench/poll.py --part cycle --sizes 1000,10000 --repeat 5
    .venv/bin/python bench/poll.py --part delay --jobs 20   # real local Slurm, as root
    .venv/bin/python bench/poll.py --part neighbours        # 10 of ours among 5,000 jobs

Part 1 ("cycle"): a fake slurmrestd in its own process serves N jobs (the recorded
22.05 or 26.05.3 job, N times; on v0.0.40+ it decides "no change since update_time"
by slurmctld's rule); the poller watches N active tasks in the embedded store. Prints
slurmrestd requests, bytes and the poller's CPU time for N = 10, 1,000, 10,000,
100,000: a cycle in which nothing changed anywhere (after the poller has settled),
a cycle in which K = min(N, 1,000) of our jobs ended, and (another poller, settled
the same way) a busy cycle, in which someone else's job changed and none of ours: what
slurmctld's answer alone costs. The last column is the changed cycle less the busy
one, per 1,000 changed tasks. The poller logs as a deployment does (INFO: a line per
state change; text, or --log json, or off), to /dev/null.

Part 1b ("neighbours"): slurmrestd bytes per cycle for 10 of our tasks among 5,000
other jobs, with the job list every cycle (the poller before issue 12) and with
/jobs/state (after), on a busy cluster (someone's job changed since the last cycle) and
a quiet one.

Part 2 ("delay", run twice: polling only, then --events): real jobs of different lengths on the local cluster, a real poller
running at the default interval, an aiosmtpd server receiving the mails: the delay
from each job's end (the time its last command wrote, more precise than Slurm's
whole-second end_time) to its mail's arrival, p50/p95.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
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

RECORDINGS = {"0.0.38": "slurm-22.05", "0.0.42": "slurm-26.05.3"}
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "slurmrestd")


class FakeSlurmrestd:
    """bench/fake_slurmrestd.py in its own process, answering as the recorded version."""

    def __init__(self, version: str):
        import requests

        recording = os.path.join(FIXTURES, RECORDINGS[version], f"v{version}")
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "fake_slurmrestd.py"),
                                      recording, version], stdout=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"
        self.session = requests.Session()
        self.session.trust_env = False
        self.version = version
        with open(os.path.join(recording, "job_running.json")) as fh:
            self.user = json.load(fh)["jobs"][0]["user_name"]   # tasks are this user's

    def __call__(self, path: str, **params):
        resp = self.session.get(self.base + path, params=params, timeout=600)
        return resp.json() if resp.status_code == 200 else None

    def client(self) -> SlurmClient:
        return SlurmClient(Transport(self.base, SlurmAuth("token", "slurm", token="t")),
                           self.version)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


class ListingOnly:
    """A client as the poller before issue 12 used it: the job list every cycle."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        if name == "get_job_states":
            raise AttributeError(name)
        return getattr(self._client, name)


TEMPLATE_TASK = {"uuid": "", "username": "someone", "name": "generic", "cwd": "/tmp",
                 "cmd": "true", "params": [], "slurm": {"output": "o", "error": "e"},
                 "dirs": {"output": "/tmp", "error": "/tmp"},
                 "notification": {"methods": [], "params": {}}}


def tasks_in(store, n: int, user: str = "someone") -> None:
    for i in range(1, n + 1):
        task = dict(copy.deepcopy(TEMPLATE_TASK), uuid=str(uuid.uuid4()), username=user)
        store.insert(new_record(task, state="RUNNING", source="submit", job_id=i))


def measure(poller, fake) -> tuple[float, dict, dict]:
    fake("/stats")
    gc.collect()        # the setup's garbage (earlier pollers' stores): not this cycle's
    t0 = time.process_time()
    counts = poller.run_once()
    cpu = (time.process_time() - t0) * 1000
    return cpu, counts, fake("/stats")


def settle(poller, fake) -> None:
    """Let CLOCK_SKEW (and slurmctld's current second) pass, then cycles until one costs
    slurmrestd a single request: the poller has read back its last writes and (v0.0.40+)
    holds a time after the last change. What follows is a cycle in which nothing
    changed anywhere."""
    time.sleep(poller.skew + 1.05)
    for _ in range(8):
        fake("/stats")
        poller.run_once()
        stats = fake("/stats")
        if stats["requests"] <= 1 and stats["bytes"] < 5000:
            return
        time.sleep(1.05)


def watching(fake, n: int) -> Poller:
    """A poller watching n active tasks (jobs 1..n, all running), settled: its next
    cycle is one in which nothing changed."""
    store = MemoryTaskStore()
    tasks_in(store, n, fake.user)
    fake("/control", ours=n, others=0)
    poller = Poller(store, fake.client(), None, interval=10, lost_after=600)
    poller.run_once()                                  # loads the tasks
    settle(poller, fake)
    return poller


def cycle_part(sizes, repeat: int = 1) -> None:
    print("poller cycle cost: fake slurmrestd in another process answering as the recorded")
    print("Slurm 22.05 (v0.0.38: GET /jobs?update_time=) and 26.05.3 (v0.0.42: from 100 watched")
    print("jobs GET /jobs?update_time= first, else GET /jobs/state for our jobs and GET /job/{id}")
    print("for the changed ones); the embedded store; CPU of the poller's process per cycle;")
    print("bytes = slurmrestd's response bodies. Busy: someone else's job changed, none of")
    print("ours (another poller, settled the same way): what slurmctld's answer alone costs;")
    print("+ms/1000: the changed cycle less the busy one, per 1,000 changed tasks.")
    print(f"{'API':>7s} {'active':>7s} | {'no-change cycle':^26s} | {'changed cycle (K tasks end)':^44s}"
          f" | {'busy cycle':^19s} {'+ms/1000':>8s}")
    print(f"{'':>7s} {'tasks':>7s} | {'CPU ms':>8s} {'requests':>8s} {'bytes':>8s} | "
          f"{'K':>5s} {'CPU ms':>8s} {'ms/1000':>8s} {'requests':>8s} {'bytes':>10s} | "
          f"{'CPU ms':>8s} {'bytes':>10s}")
    for version in ("0.0.38", "0.0.42"):
        fake = FakeSlurmrestd(version)
        try:
            for n in sizes:
                if version == "0.0.38" and n > 10_000:
                    print(f"{version:>7s} {n:7d} | v0.0.38 lists every job at each change "
                          f"(~4 kB a job): not run at this size")
                    continue
                for _ in range(repeat):           # one line per run: a busy machine is noisy
                    poller = watching(fake, n)
                    cpu, counts, stats = measure(poller, fake)
                    assert counts["active"] == n and counts["changed"] == 0, counts
                    k = min(n, 1000)
                    fake("/finish", first=k)
                    kcpu, kcounts, kstats = measure(poller, fake)
                    assert kcounts["changed"] == k, kcounts
                    poller = watching(fake, n)
                    fake("/touch")
                    bcpu, bcounts, bstats = measure(poller, fake)
                    assert bcounts["changed"] == 0, bcounts
                    print(f"{version:>7s} {n:7d} | {cpu:8.2f} {stats['requests']:8d} "
                          f"{stats['bytes']:8d} | {k:5d} {kcpu:8.1f} {kcpu * 1000 / k:8.1f} "
                          f"{kstats['requests']:8d} {kstats['bytes']:10d} | {bcpu:8.1f} "
                          f"{bstats['bytes']:10d} {(kcpu - bcpu) * 1000 / k:8.1f}", flush=True)
        finally:
            fake.close()


def neighbours_part(ours: int = 10, others: int = 5000, cycles: int = 40) -> None:
    """slurmrestd bytes per cycle when our few tasks share the cluster with many jobs:
    the mean of ``cycles`` busy cycles (someone else's job changed before each), then of
    ``cycles`` quiet ones."""
    print(f"\n{ours} of our tasks among {others:,} other jobs: slurmrestd bytes per cycle, "
          f"mean of {cycles} cycles")
    print(f"{'API':>7s} {'poller':<40s} {'busy cluster':>14s} {'CPU ms':>8s} {'quiet cluster':>14s}")
    for version in ("0.0.38", "0.0.42"):
        fake = FakeSlurmrestd(version)
        try:
            if version == "0.0.38":
                ways = [("before: job list at every change", False),
                        ("after: ours one by one while busy", True)]
            else:
                ways = [("before: job list every cycle", False),
                        ("after: /jobs/state, our jobs only", True)]
            for label, after in ways:
                store = MemoryTaskStore()
                tasks_in(store, ours, fake.user)
                fake("/control", ours=ours, others=others)
                client = fake.client()
                poller = Poller(store, client if after or version == "0.0.38"
                                else ListingOnly(client), None)
                if not after:
                    poller.look.one_by_one_max = 0
                poller.run_once()
                settle(poller, fake)
                busy, cpu, quiet = 0, 0.0, 0
                for _ in range(cycles):
                    fake("/touch")                  # someone else's job changed
                    c, _, stats = measure(poller, fake)
                    busy, cpu = busy + stats["bytes"], cpu + c
                time.sleep(1.05)                    # slurmctld's second of that change
                for _ in range(cycles):
                    _, _, stats = measure(poller, fake)   # nothing changed since
                    quiet += stats["bytes"]
                print(f"{version:>7s} {label:<40s} {busy // cycles:14,d} {cpu / cycles:8.1f} "
                      f"{quiet // cycles:14,d}")
        finally:
            fake.close()


def jobcomp_url():
    """The dev cluster's JobCompLoc when slurmctld runs jobcomp/elasticsearch."""
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                         timeout=10).stdout
    values = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines())}
    if values.get("JobCompType") != "jobcomp/elasticsearch":
        raise SystemExit("slurmctld does not send events (run scripts/dev-cluster.sh restart)")
    from urllib.parse import unquote, urlsplit
    url = urlsplit(values["JobCompLoc"])
    return url.port, unquote(url.username), unquote(url.password)


def delay_part(jobs: int, interval: float, events: bool) -> None:
    from aiosmtpd.controller import Controller

    from app import create_app
    from app.poller import build_poller
    from app.states import TERMINAL_STATES

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
    if events:
        port, cluster, secret = jobcomp_url()
        config.update(SLURM_CLUSTER_NAME=cluster, SLURM_EVENT_SECRET=secret)
    from app.auth import MemoryKeyStore, new_key

    store = MemoryTaskStore()
    key, record = new_key("bench", ["*"], ["submit", "read"])
    app = create_app(config, store=store, keys=MemoryKeyStore([record]), environ={})
    services = app.extensions["slurm_proxy"]
    poller = build_poller(load_config({}, config), store=store, slurm=services.slurm)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    server = None
    if events:                                   # slurmctld's plugin posts here
        from werkzeug.serving import make_server
        server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
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
    if server is not None:
        server.shutdown()
    delays, seen, sent, marked = [], [], [], []
    for u in uuids:
        record = store.get(u)
        if u in arrivals and record["slurm_job_state"] in TERMINAL_STATES:
            with open(record["outputs"]["stdout"]) as fh:
                ended = float(fh.read().split()[-1])
            delays.append(arrivals[u] - ended)
            # Where the time went: slurmctld's end_time (whole seconds), the state
            # recorded (history), the mail received.
            recorded = record["history"][-1]["at"].timestamp()
            seen.append(recorded - ended)
            sent.append(arrivals[u] - recorded)
            if record.get("end_time"):
                marked.append(record["end_time"].timestamp() - ended)
    delays.sort()
    q = statistics.quantiles(delays, n=20) if len(delays) > 1 else delays * 19
    mode = "events on" if events else "polling only"
    target = 1.5 if events else interval + 1
    print(f"\njob end (the job's own last timestamp) -> mail arrival, {mode}: {len(delays)} of "
          f"{jobs} jobs, poll interval {poller.current_interval():.0f} s")
    print(f"p50 {statistics.median(delays):.2f} s   p95 {q[18]:.2f} s   max {max(delays):.2f} s"
          f"   (target p95 <= {target:g} s)")
    print(f"  of which: job end -> state recorded p50 {statistics.median(seen):.2f} s, max "
          f"{max(seen):.2f} s; recorded -> mail p50 {statistics.median(sent):.2f} s, max "
          f"{max(sent):.2f} s; slurmctld's end_time - job's last write (whole seconds) "
          f"p50 {statistics.median(marked) if marked else float('nan'):.2f} s")


def log_as_deployed(fmt: str) -> None:
    """The logging a deployment has (SLURM_PROXY_LOG_LEVEL=INFO, this format), each line
    written to /dev/null instead of stderr: its cost is part of a changed cycle's."""
    from app.logs import setup_logging

    setup_logging(load_config({"SLURM_PROXY_LOG_FORMAT": fmt}))
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("cycle", "neighbours", "delay", "all"), default="all")
    ap.add_argument("--sizes", default="10,1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=1, help="cycle: runs per size")
    ap.add_argument("--events", action="store_true",
                    help="delay: with slurmctld's jobcomp events (the dev cluster's JobCompLoc)")
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--interval", type=float, default=load_config({})["SLURM_POLL_INTERVAL"])
    ap.add_argument("--log", choices=("text", "json", "off"), default="text",
                    help="the poller's log lines as a deployment writes them (INFO: a line "
                         "per state change), to /dev/null; off: none, as before issue 12's "
                         "third pass measured")
    args = ap.parse_args()
    if args.log != "off":
        log_as_deployed(args.log)
    if args.part in ("cycle", "all"):
        cycle_part([int(n) for n in args.sizes.split(",")], args.repeat)
    if args.part in ("neighbours", "all"):
        neighbours_part()
    if args.part in ("delay", "all"):
        if not args.events:
            delay_part(args.jobs, args.interval, events=False)
        delay_part(args.jobs, args.interval, events=True)


if __name__ == "__main__":
    main()
