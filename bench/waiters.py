"""What waiting costs: 1,000 clients waiting on tasks (half ``?wait=`` long polls, half
event streams), then also 50 browser tabs of the web page, against the default
configuration (gunicorn with its gevent worker, the embedded store, the poller
inside the worker, rate limits on).

Needs the local cluster (scripts/dev-cluster.sh start) and root (to read the JWT key):

    .venv/bin/python bench/waiters.py [--waiters 1000] [--tabs 50] [--tasks 20]

In one run, against one service, three windows of the same length:
  idle      nobody waits;
  waiters   --waiters clients wait on --tasks sleeping jobs (half long polls that ask
            again when their 60 s are up, half event streams);
  + tabs    the same, plus --tabs signed-in tabs (each: the My tasks stream and a
            task page stream).
In each: /healthz and POST /submit latency (p50, p95; one client, sequential),
slurmrestd requests by kind (a counting relay sits between the service and
slurmrestd), and the service's memory (RSS of gunicorn's processes). Then the jobs
are cancelled and every waiter must learn the end: the delay from the record's
change to each waiter's answer. Prints the ratios against idle.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from served import start_gunicorn  # noqa: E402 (bench/, beside this script)

from app.auth import FileKeyStore, new_key  # noqa: E402

SLURM = os.environ.get("SLURM_BASE_URL", "http://127.0.0.1:6820")
KEY_FILE = os.environ.get("SLURM_JWT_HS256_KEY_FILE", "/etc/slurm/jwt_hs256.key")
USER = os.environ.get("DEV_CLUSTER_USER", "someone")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "OUT_OF_MEMORY", "LOST", "SUBMIT_FAILED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a relay in front of slurmrestd that counts what the service asks ------------------
class Relay(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int):
        self.counts: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.session = requests.Session()
        super().__init__(("127.0.0.1", port), RelayHandler)


class RelayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _relay(self):
        path = self.path.split("?")[0]
        kind = re.sub(r"/slurm/v[\d.]+", "", path)
        kind = re.sub(r"/job/\d+", "/job/{id}", kind)
        with self.server.lock:
            self.server.counts[f"{self.command} {kind}"] += 1
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        resp = self.server.session.request(self.command, SLURM + self.path, data=body or None,
                                           headers=headers, timeout=30)
        self.send_response(resp.status_code)
        for k, v in resp.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    do_GET = do_POST = do_DELETE = _relay


# -- the service -------------------------------------------------------------------------
def start_service(port: int, relay_port: int, keys_file: str) -> subprocess.Popen:
    env = {**os.environ, "SLURM_BASE_URL": f"http://127.0.0.1:{relay_port}",
           "SLURM_JWT_HS256_KEY_FILE": KEY_FILE, "SLURM_API_VERSION": "0.0.38",
           "SLURM_PROXY_PORT": str(port), "SLURM_PROXY_LOG_LEVEL": "WARNING", "MONGODB_URI": "",
           "SLURM_PROXY_API_KEYS_FILE": keys_file}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "SLURM_PROXY_RATE_LIMIT", "SLURM_POLL_INTERVAL",
                 "GUNICORN_WORKER_CLASS", "SLURM_PROXY_MAX_WAIT"):
        env.pop(name, None)                      # the defaults, whatever this shell says
    return start_gunicorn(env, port, "--access-logfile", "/dev/null")


def rss_mb(pid: int) -> float:
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                    text=True).stdout.split()]
    total = 0
    for p in pids:
        with open(f"/proc/{p}/status") as fh:
            total += int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1))
    return total / 1024


def task(**changes) -> dict:
    home = os.path.expanduser(f"~{USER}")
    return {"uuid": str(uuid.uuid4()), "username": USER, "cwd": home, "name": "generic",
            "cmd": "true", "params": [],
            "slurm": {"job_name": "slurm-proxy-bench", "time": 20, "mem": 10, "nodes": 1,
                      "partition": "hpcz-test", "output": "bench.out", "error": "bench.err"},
            "dirs": {"parent": f"{home}/slurm-proxy-bench", "output": f"{home}/slurm-proxy-bench",
                     "error": f"{home}/slurm-proxy-bench"}, **changes}


# -- waiters (asyncio, one thread, raw HTTP) ----------------------------------------------
class Waiters:
    def __init__(self, port: int):
        self.port = port
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.connected = 0
        self.answers = 0
        self.errors: collections.Counter = collections.Counter()
        self.done: list[float] = []          # seconds from the record's change to the answer
        self.open = 0
        self.tasks: set = set()
        self.early: list = []                # long polls answered before the end (60 s up)

    def start(self, coro):
        def create():                        # the loop keeps only weak references to tasks
            task_ = self.loop.create_task(coro)
            self.tasks.add(task_)
            task_.add_done_callback(self.tasks.discard)
        self.loop.call_soon_threadsafe(create)

    async def _request(self, path: str, headers: dict, waiting: bool = False):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n".encode())
        await writer.drain()
        if waiting:                         # a long poll's answer comes when the wait ends
            self.open += 1
        try:
            status = (await reader.readline()).decode()
        finally:
            if waiting:
                self.open -= 1
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        return reader, writer, status

    async def long_poll(self, uuid_: str, key: str):
        """Like a script's wait loop: ask again whenever the 60 s are up."""
        while True:
            asked = time.monotonic()
            try:
                reader, writer, status = await self._request(
                    f"/monitor/task_uuid/{uuid_}?wait=60",
                    {"Authorization": f"Bearer {key}", "Connection": "close"}, waiting=True)
                self.connected += 1
                body = await reader.read()
                writer.close()
            except OSError as exc:
                self.errors[type(exc).__name__] += 1
                await asyncio.sleep(1)
                continue
            if " 200 " not in status:
                self.errors[status.strip()] += 1
                await asyncio.sleep(1)
                continue
            self.answers += 1
            record = json.loads(body.decode().split("\r\n\r\n")[-1] if b"\r\n\r\n" in body else body)["monitor"]
            if record["slurm_job_state"] in FINAL:
                self.done.append(time.time() - parse_time(record["updated_at"]))
                return
            self.early.append((record["slurm_job_state"], round(time.monotonic() - asked, 1)))

    async def stream(self, path: str, headers: dict, until_end: bool = True):
        try:
            reader, writer, status = await self._request(path, {**headers, "Accept": "text/event-stream"})
        except OSError as exc:
            self.errors[type(exc).__name__] += 1
            return
        if " 200 " not in status:
            self.errors[status.strip()] += 1
            return
        self.connected += 1
        self.open += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                text = line.decode(errors="replace")
                if text.startswith("data: {") and until_end:
                    data = json.loads(text[6:])
                    if data.get("final"):
                        self.done.append(time.time() - parse_time(data["updated_at"]))
                        return
        finally:
            self.open -= 1
            writer.close()


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- measuring ----------------------------------------------------------------------------
def measure(base: str, key: str, relay: Relay, pid: int, window: float, n_health: int, n_submit: int):
    with relay.lock:
        before = collections.Counter(relay.counts)
    started = time.monotonic()
    health, submits, submitted = [], [], []
    for _ in range(n_health):
        t = time.perf_counter()
        requests.get(base + "/healthz", timeout=30).raise_for_status()
        health.append((time.perf_counter() - t) * 1000)
    for _ in range(n_submit):
        t = time.perf_counter()
        resp = requests.post(base + "/submit", json={"task": task()}, timeout=30,
                             headers={"Authorization": f"Bearer {key}"})
        submits.append((time.perf_counter() - t) * 1000)
        resp.raise_for_status()
        submitted.append(resp.json()["uuid"])
        time.sleep(0.12)                          # under the default 20/second per key
    memory = rss_mb(pid)
    time.sleep(max(0.0, window - (time.monotonic() - started)))
    with relay.lock:
        counts = relay.counts - before
    return {"healthz_p50": statistics.median(health),
            "healthz_p95": statistics.quantiles(health, n=20)[18],
            "submit_p50": statistics.median(submits),
            "submit_p95": statistics.quantiles(submits, n=20)[18],
            "rss_mb": memory, "slurm": dict(counts), "submitted": submitted}


def sign_in_tab(base: str, key: str) -> str:
    s = requests.Session()
    page = s.get(base + "/ui/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    s.post(base + "/ui/login", data={"csrf_token": token, "api_key": key, "next": "/ui/"},
           timeout=10, allow_redirects=False).raise_for_status()
    return "; ".join(f"{c.name}={c.value}" for c in s.cookies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--tabs", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--health", type=int, default=200)
    parser.add_argument("--submits", type=int, default=30)
    args = parser.parse_args()

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    tmp = f"/tmp/slurm-proxy-bench-waiters-{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    keys = FileKeyStore(f"{tmp}/keys.json")
    plain = {}
    for name in ["bench"] + [f"w{i}" for i in range(max(1, args.waiters // 10))]:
        plain[name], record = new_key(name, [USER], ["submit", "read", "cancel"])
        keys.add(record)
    waiter_keys = [v for k, v in plain.items() if k != "bench"]

    relay = Relay(free_port())
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    port = free_port()
    proc = start_service(port, relay.server_port, keys.path)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {plain['bench']}"}
    results = {}
    sleepers: list[str] = []
    try:
        for _ in range(args.tasks):
            resp = requests.post(base + "/submit", headers=auth, timeout=30,
                                 json={"task": task(cmd="sleep", params=["1200"])})
            resp.raise_for_status()
            sleepers.append(resp.json()["uuid"])
            time.sleep(0.1)
        time.sleep(2)
        measure(base, plain["bench"], relay, proc.pid, 0, 20, 3)           # warm up
        warm = sign_in_tab(base, plain["bench"])                            # and the page's code
        requests.get(base + "/ui/", headers={"Cookie": warm}, timeout=10).raise_for_status()
        requests.get(base + f"/ui/tasks/{sleepers[0]}", headers={"Cookie": warm}, timeout=30)
        results["idle"] = measure(base, plain["bench"], relay, proc.pid, args.window,
                                  args.health, args.submits)

        w = Waiters(port)
        for i in range(args.waiters):
            uuid_ = sleepers[i % len(sleepers)]
            key = waiter_keys[i % len(waiter_keys)]
            if i % 2 == 0:
                w.start(w.long_poll(uuid_, key))
            else:
                w.start(w.stream(f"/monitor/task_uuid/{uuid_}/events", {"Authorization": f"Bearer {key}"}))
            if i % 20 == 19:
                time.sleep(0.02)
        deadline = time.monotonic() + 60
        while w.open < args.waiters and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"{w.open} waiters connected ({dict(w.errors) or 'no errors'})", file=sys.stderr)
        results["waiters"] = measure(base, plain["bench"], relay, proc.pid, args.window,
                                     args.health, args.submits)
        results["waiters"]["open"] = w.open

        tab_key = waiter_keys[0] if args.tabs else None
        cookie = sign_in_tab(base, plain["bench"]) if args.tabs else ""
        for i in range(args.tabs):
            w.start(w.stream("/ui/events", {"Cookie": cookie}, until_end=False))
            w.start(w.stream(f"/ui/tasks/{sleepers[i % len(sleepers)]}/events", {"Cookie": cookie}))
            time.sleep(0.15)                     # a person opening tabs, under 20/second
        deadline = time.monotonic() + 30
        while w.open < args.waiters + 2 * args.tabs and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"{w.open} waiters and tab streams open ({dict(w.errors) or 'no errors'})", file=sys.stderr)
        results["tabs"] = measure(base, plain["bench"], relay, proc.pid, args.window,
                                  args.health, args.submits)
        results["tabs"]["open"] = w.open
        del tab_key

        # The end: cancel the sleeping jobs; every waiter must hear of it.
        for uuid_ in sleepers:
            requests.delete(base + f"/monitor/task_uuid/{uuid_}", headers=auth, timeout=30)
        expected = args.waiters + args.tabs       # long polls, task streams, tab task streams
        deadline = time.monotonic() + 60
        while len(w.done) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        results["end"] = {"told": len(w.done), "expected": expected,
                          "delay_p50": statistics.median(w.done) if w.done else None,
                          "delay_max": max(w.done) if w.done else None,
                          "long_poll_answers": w.answers, "early": w.early[:10]}
        w.loop.call_soon_threadsafe(lambda: [t.cancel() for t in list(w.tasks)])
        time.sleep(0.5)                          # the tab streams still open end here
    finally:
        for uuid_ in sleepers:
            requests.delete(base + f"/monitor/task_uuid/{uuid_}", headers=auth, timeout=30)
        proc.terminate()
        proc.wait(40)
        relay.shutdown()

    idle = results["idle"]
    print(f"\nslurm-proxy, default configuration (gevent worker, embedded store), "
          f"{args.tasks} sleeping jobs watched; windows of {args.window:.0f} s")
    print(f"{'':28s} {'healthz p50/p95 ms':>20s} {'submit p50/p95 ms':>20s} {'RSS MB':>8s}  slurmrestd requests in the window")
    for name, label in (("idle", "idle"), ("waiters", f"{args.waiters} waiters"),
                        ("tabs", f"+ {args.tabs} tabs ({2 * args.tabs} streams)")):
        r = results[name]
        slurm = ", ".join(f"{k}: {v}" for k, v in sorted(r["slurm"].items()))
        print(f"{label:28s} {r['healthz_p50']:8.2f} / {r['healthz_p95']:6.2f}    "
              f"{r['submit_p50']:8.2f} / {r['submit_p95']:6.2f}    {r['rss_mb']:7.1f}  {slurm}")
    for name in ("waiters", "tabs"):
        r = results[name]
        job_reads = r["slurm"].get("GET /job/{id}", 0) - idle["slurm"].get("GET /job/{id}", 0)
        print(f"{name}: healthz p50 {r['healthz_p50'] / idle['healthz_p50']:.2f}x idle, "
              f"submit p50 {r['submit_p50'] / idle['submit_p50']:.2f}x idle, "
              f"memory +{r['rss_mb'] - idle['rss_mb']:.1f} MB, "
              f"job reads beyond idle {job_reads}, open connections {r['open']}")
    e = results["end"]
    print(f"end: {e['told']}/{e['expected']} waiters told of the cancel; record change -> "
          f"answer p50 {e['delay_p50']:.3f} s, max {e['delay_max']:.3f} s; "
          f"{e['long_poll_answers']} long-poll answers in all; before the end: {e['early']}")


if __name__ == "__main__":
    main()
