"""Submit latency and throughput: slurm-proxy under gunicorn vs slurmrestd direct.

Needs the local cluster (scripts/dev-cluster.sh start) and root (to read the JWT key):

    .venv/bin/python bench/submit.py [--requests 200] [--clients 4]

Both sides submit the same job (``true``, 10 MB, 1 minute) for the same user in one
run, alternating, so the machine's state is shared. The proxy is a real gunicorn
(docker/gunicorn.conf.py) with the embedded store; it does everything it does in
production per submit: check the API key, validate, merge the registry entry, build
the script, insert the record, mint the user's token, submit, record the job id (no
per-key limit, so that it does not throttle the measurement; ``--rate-limit`` counts one
too high to reach, for what counting costs). Prints p50/p95 latency
of one client, throughput of several, the ratios, and the CPU each side used per
submit. Cancels its jobs afterwards.

With the embedded store the poller runs inside the web worker (in production it is a
process of its own, measured by bench/poll.py); its cycles would be counted as the
proxy's CPU here, so it is slowed to one cycle an hour unless ``--with-poller``.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from served import start_gunicorn  # noqa: E402 (bench/, beside this script)

from app.batch import build_submission  # noqa: E402
from app.config import SlurmAuth  # noqa: E402
from app.constants import resolve_task  # noqa: E402
from app.schemas.task import SubmitSchema  # noqa: E402
from app.slurm.transport import TokenSource  # noqa: E402
from app.slurm.versions import ADAPTERS  # noqa: E402

SLURM = os.environ.get("SLURM_BASE_URL", "http://127.0.0.1:6820")
KEY_FILE = os.environ.get("SLURM_JWT_HS256_KEY_FILE", "/etc/slurm/jwt_hs256.key")
USER = os.environ.get("DEV_CLUSTER_USER", "someone")
JOB_NAME = "slurm-proxy-bench"


def task() -> dict:
    home = os.path.expanduser(f"~{USER}")
    return {"uuid": str(uuid.uuid4()), "username": USER, "cwd": home, "name": "generic",
            "cmd": "true", "params": [],
            "slurm": {"job_name": JOB_NAME, "time": 1, "mem": 10, "nodes": 1,
                      "partition": "hpcz-test", "output": "bench.out", "error": "bench.err"},
            "dirs": {"parent": f"{home}/slurm-proxy-bench", "output": f"{home}/slurm-proxy-bench",
                     "error": f"{home}/slurm-proxy-bench"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(port: int, keys_file: str, with_poller: bool = False,
                rate_limit: str = "") -> subprocess.Popen:
    env = {**os.environ, "SLURM_BASE_URL": SLURM, "SLURM_JWT_HS256_KEY_FILE": KEY_FILE,
           "SLURM_API_VERSION": "0.0.38", "SLURM_PROXY_PORT": str(port),
           "SLURM_PROXY_LOG_LEVEL": "WARNING", "MONGODB_URI": "",
           "SLURM_PROXY_API_KEYS_FILE": keys_file, "SLURM_PROXY_RATE_LIMIT": rate_limit}
    if not with_poller:
        env["SLURM_POLL_INTERVAL"] = env["SLURM_POLL_INTERVAL_WITH_EVENTS"] = "3600"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)     # an empty value would mean "this directory"
    # Access lines as configured (GUNICORN_ACCESS_LOG, default on), to stdout: discarded.
    return start_gunicorn(env, port)


class Direct:
    def __init__(self):
        with open(KEY_FILE, "rb") as fh:
            self.tokens = TokenSource(SlurmAuth("key", "slurm", key=fh.read(), lifespan=3600))
        self.adapter = ADAPTERS["0.0.38"]()

    def __call__(self, session: requests.Session) -> None:
        plan = resolve_task(SubmitSchema().load({"task": task()})["task"])
        body = self.adapter.submit_body(build_submission(plan))
        resp = session.post(f"{SLURM}{self.adapter.prefix}/job/submit", json=body,
                            headers=self.tokens.headers(USER), timeout=30)
        assert resp.status_code == 200 and resp.json().get("job_id"), resp.text[:200]


class Proxy:
    def __init__(self, port: int, key: str):
        self.url = f"http://127.0.0.1:{port}/submit"
        self.headers = {"Authorization": f"Bearer {key}"}

    def __call__(self, session: requests.Session) -> None:
        resp = session.post(self.url, json={"task": task()}, headers=self.headers, timeout=30)
        assert resp.status_code == 200, resp.text[:300]


def latencies(fn, n: int) -> list[float]:
    session = requests.Session()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(session)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def throughput(fn, clients: int, per_client: int) -> float:
    barrier = threading.Barrier(clients + 1)

    failures = []

    def worker():
        session = requests.Session()
        barrier.wait()
        try:
            for _ in range(per_client):
                fn(session)
        except Exception as exc:  # noqa: BLE001 - reported below, never a made-up rate
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} of {clients} clients failed: {failures[0]!r}")
    return clients * per_client / (time.perf_counter() - t0)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            pass
    return total


def pids_of(*names: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", "|".join(names)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def tree(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


def measured_throughput(fn, clients, per_client, proxy_pid=None):
    """req/s, plus CPU ms per request of: this client, the proxy, slurmrestd+slurmctld."""
    slurm = pids_of("slurmctld", "slurmrestd", "slurmd")
    proxy = tree(proxy_pid) if proxy_pid else []
    me0, px0, sl0 = time.process_time(), cpu_seconds(proxy), cpu_seconds(slurm)
    rate = throughput(fn, clients, per_client)
    n = clients * per_client
    cpu = {"client": (time.process_time() - me0) * 1000 / n,
           "proxy": (cpu_seconds(proxy) - px0) * 1000 / n,
           "slurm": (cpu_seconds(slurm) - sl0) * 1000 / n}
    return rate, cpu


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200, help="sequential requests per side")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--per-client", type=int, default=100)
    ap.add_argument("--rate-limit", default="", metavar="SPEC",
                    help="a per-key limit to count (never reached), e.g. 100000/second;"
                         "10000000/minute: what counting costs; default none")
    ap.add_argument("--with-poller", action="store_true",
                    help="let the embedded poller cycle as usual (its CPU counts as the proxy's)")
    args = ap.parse_args()
    port = free_port()
    import tempfile

    from app.auth import FileKeyStore, new_key

    keys_file = os.path.join(tempfile.mkdtemp(prefix="bench-keys-"), "keys.json")
    key, record = new_key("bench", [USER], ["submit", "read"])
    FileKeyStore(keys_file).add(record)
    proxy_proc = start_proxy(port, keys_file, args.with_poller, args.rate_limit)
    direct, proxy = Direct(), Proxy(port, key)
    try:
        # warm up both (connections, version detection, first token)
        latencies(direct, 5)
        latencies(proxy, 5)
        lat = {"direct": [], "proxy": []}
        for block in range(args.requests // 20):       # alternate in blocks of 20
            order = ("direct", "proxy") if block % 2 == 0 else ("proxy", "direct")
            for name in order:
                lat[name] += latencies(direct if name == "direct" else proxy, 20)
        thr = {"direct": [], "proxy": []}
        cpu = {"direct": [], "proxy": []}
        sides = [("direct", direct, None), ("proxy", proxy, proxy_proc.pid)]
        for round_ in range(4):      # D P, P D, D P, P D: neither side always goes second
            for name, fn, pid in (sides if round_ % 2 == 0 else sides[::-1]):
                rate, used = measured_throughput(fn, args.clients, args.per_client // 4, pid)
                thr[name].append(rate)
                cpu[name].append(used)
    finally:
        proxy_proc.terminate()
        proxy_proc.wait(10)
        subprocess.run(["scancel", f"--name={JOB_NAME}"], check=False)

    d50, d95 = pct(lat["direct"], 50), pct(lat["direct"], 95)
    p50, p95 = pct(lat["proxy"], 50), pct(lat["proxy"], 95)
    dt, pt = statistics.mean(thr["direct"]), statistics.mean(thr["proxy"])
    print(f"slurm-proxy submit benchmark ({len(lat['direct'])} sequential requests per side, "
          f"{args.clients} concurrent clients x {args.per_client} for throughput)")
    def cpu_cols(name):
        return [statistics.mean(c[k] for c in cpu[name]) for k in ("client", "proxy", "slurm")]

    print(f"{'':22s}{'p50 ms':>10s}{'p95 ms':>10s}{'req/s':>10s}   CPU ms per request: "
          f"client / proxy / slurm daemons")
    dc, pc = cpu_cols("direct"), cpu_cols("proxy")
    print(f"{'slurmrestd direct':22s}{d50:10.2f}{d95:10.2f}{dt:10.1f}   "
          f"{dc[0]:.2f} / {dc[1]:.2f} / {dc[2]:.2f}")
    print(f"{'slurm-proxy (gunicorn)':22s}{p50:10.2f}{p95:10.2f}{pt:10.1f}   "
          f"{pc[0]:.2f} / {pc[1]:.2f} / {pc[2]:.2f}")
    print(f"added latency p50: {p50 - d50:.2f} ms (target <= 5 ms)")
    print(f"proxy CPU per submit: {pc[1]:.2f} ms (target <= 1.5 ms); Slurm daemons' "
          f"{dc[2]:.2f} ms direct ({'embedded poller on' if args.with_poller else 'poller not counted'}, "
          f"access log {os.environ.get('GUNICORN_ACCESS_LOG', 'on')}, "
          f"per-key limit {args.rate_limit or 'off'})")
    print(f"throughput ratio proxy/direct: {pt / dt:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
