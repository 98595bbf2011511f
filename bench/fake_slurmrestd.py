"""A slurmrestd stand-in for the poll benchmarks, run as its own process.

    python bench/fake_slurmrestd.py <recording dir> <version>   # prints its port

It answers like the recorded slurmrestd of that version (the recorded job, re-numbered),
for a cluster of ``ours`` jobs (ids 1..ours) and ``others`` jobs of other people:
``GET /jobs[?update_time=]`` (every job, or "no change" as that version says it:
304 on v0.0.38, 200 with "jobs": [] and a warning on v0.0.40+), ``GET /jobs/state``
``GET /job/{id}`` and ``GET /diag`` (the recorded 22.05 statistics, whose counters
every version names alike, with jobs started/completed/running as the cluster's). It counts requests and body bytes sent. On v0.0.40+ "no change"
is decided as slurmctld does: ``update_time - 1 >= last_job_update`` in whole seconds,
and every answer's ``last_update`` is its clock's now.

Control (not part of slurmrestd): ``/control?ours=N&others=M`` (all RUNNING),
``/finish?first=K`` (our jobs 1..K end COMPLETED), ``/touch`` (someone else's job
changed: the next update_time asks get a listing), ``/stats`` (and reset).
"""
from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

RECORDING, VERSION = Path(sys.argv[1]), sys.argv[2]
MODERN = VERSION != "0.0.38"
PREFIX = f"/slurm/v{VERSION}"
RUNNING = json.loads((RECORDING / "job_running.json").read_text())["jobs"][0]
COMPLETED = json.loads((RECORDING / "job_completed.json").read_text())["jobs"][0]
UNCHANGED = (RECORDING / "jobs_since_unchanged.json").read_bytes() if MODERN else b""
DIAG = json.loads((RECORDING.parent.parent / "slurm-22.05" / "v0.0.38" / "diag.json").read_text())
ENVELOPE = {k: v for k, v in json.loads((RECORDING / "job_running.json").read_text()).items()
            if k != "jobs"}


def template(job: dict) -> tuple[str, str]:
    """The job as JSON text split around its id, so N jobs are N string joins."""
    marker = 987654321
    text = json.dumps({**job, "job_id": marker, "comment": "",
                       "array_job_id": ({"set": True, "infinite": False, "number": 0}
                                        if MODERN else 0)})
    head, _, tail = text.partition(str(marker))
    return head, tail


RUN_T, DONE_T = template(RUNNING), template(COMPLETED)
STATE = {"ours": 0, "others": 0, "done": 0, "changed": True, "requests": 0, "bytes": 0,
         "listing": b"", "last_job_update": 0}


def changed() -> None:
    STATE.update(changed=True, last_job_update=int(time.time()))


def envelope() -> dict:
    if not MODERN:
        return ENVELOPE
    return {**ENVELOPE, "last_update": {"set": True, "infinite": False, "number": int(time.time())}}


def job_text(job_id: int) -> str:
    head, tail = DONE_T if job_id <= STATE["done"] else RUN_T
    return f"{head}{job_id}{tail}"


def listing() -> bytes:
    if not STATE["listing"]:
        ids = list(range(1, STATE["ours"] + 1)) + \
            list(range(10_000_000, 10_000_000 + STATE["others"]))
        text = json.dumps({**envelope(), "jobs": ["@@"]})
        STATE["listing"] = text.replace('"@@"', ",".join(job_text(i) for i in ids)).encode()
    return STATE["listing"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status: int, body: bytes = b"", count: bool = True) -> None:
        if count:              # before answering: the client may ask /stats right after
            STATE["requests"] += 1
            STATE["bytes"] += len(body)
        # Headers and body in one write: two small writes would meet the client's
        # delayed ACK (Nagle), 40 ms a request, which no real server makes us wait.
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.wfile.write(head.encode() + body)

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/control":
            STATE.update(ours=int(query["ours"]), others=int(query["others"]), done=0,
                         listing=b"")
            changed()
            return self.send(204, count=False)
        if path == "/finish":
            STATE.update(done=int(query["first"]), listing=b"")
            changed()
            return self.send(204, count=False)
        if path == "/touch":
            changed()
            return self.send(204, count=False)
        if path == "/stats":
            body = json.dumps({"requests": STATE["requests"], "bytes": STATE["bytes"]}).encode()
            STATE.update(requests=0, bytes=0)
            return self.send(200, body, count=False)
        if path == f"{PREFIX}/jobs":
            if MODERN and "update_time" in query \
                    and int(query["update_time"]) - 1 >= STATE["last_job_update"]:
                return self.send(200, UNCHANGED)
            if not MODERN and "update_time" in query and not STATE["changed"]:
                return self.send(304)
            STATE["changed"] = False
            if MODERN:                  # its last_update is now (not cached with the list)
                STATE["listing"] = b""
            return self.send(200, listing())
        if path == f"{PREFIX}/jobs/state":
            ids = [int(i) for i in query.get("job_id", "").split(",") if i]
            jobs = [{"job_id": str(i), "state": ["COMPLETED" if i <= STATE["done"] else "RUNNING"]}
                    for i in ids if i <= STATE["ours"]]
            return self.send(200, json.dumps({**ENVELOPE, "jobs": jobs}).encode())
        if path == f"{PREFIX}/diag":
            jobs, done = STATE["ours"] + STATE["others"], STATE["done"]
            stats = {**DIAG["statistics"], "jobs_submitted": jobs, "jobs_started": jobs,
                     "jobs_completed": done, "jobs_canceled": 0, "jobs_failed": 0,
                     "jobs_pending": 0, "jobs_running": jobs - done}
            return self.send(200, json.dumps({**ENVELOPE, "statistics": stats}).encode())
        if path.startswith(f"{PREFIX}/job/"):
            job_id = int(path.rsplit("/", 1)[1])
            body = json.dumps({**envelope(), "jobs": ["@@"]}).replace('"@@"', job_text(job_id))
            return self.send(200, body.encode())
        self.send(404, b"{}")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
