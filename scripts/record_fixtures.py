"""Record real slurmrestd responses for the adapter tests.

Run as root against the dev cluster (``scripts/dev-cluster.sh start``):

    python scripts/record_fixtures.py [--version 0.0.38] [--user someone]

Writes ``tests/fixtures/slurmrestd/slurm-<release>/v<version>/<kind>.json`` (release
from ``scontrol --version``, e.g. ``slurm-22.05``) plus an ``index.json`` (method,
path, headers with tokens masked, body, status, file), the layout of the 24.11.7 and
26.05.3 recordings beside it. Takes about 90 s (it waits for a time-out).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent


def token(user: str) -> str:
    out = subprocess.run(["scontrol", "token", f"username={user}", "lifespan=3600"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().partition("=")[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="0.0.38")
    ap.add_argument("--user", default="someone")
    ap.add_argument("--base", default="http://127.0.0.1:6820")
    ap.add_argument("--partition", default="hpcz-test")
    ap.add_argument("--out", type=pathlib.Path, help="folder of the release's recordings "
                    "(default: tests/fixtures/slurmrestd/slurm-<release>)")
    args = ap.parse_args()
    v, user = args.version, args.user
    release = subprocess.run(["scontrol", "--version"], check=True, capture_output=True,
                             text=True).stdout.split()[-1].rsplit(".", 1)[0]
    out_dir = (args.out or ROOT / "tests" / "fixtures" / "slurmrestd" / f"slurm-{release}") / f"v{v}"
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = {"root": token("root"), user: token(user)}
    masks = {tokens["root"]: "<root-jwt>", tokens[user]: f"<{user}-jwt>"}
    index: dict = {}
    prefix = f"/slurm/v{v}"

    def call(kind, method, path, *, as_user="root", tok=None, body=None, note=None):
        headers = {"X-SLURM-USER-NAME": as_user,
                   "X-SLURM-USER-TOKEN": tok if tok is not None else tokens[as_user]}
        resp = requests.request(method, args.base + path, headers=headers, json=body, timeout=30)
        ctype = resp.headers.get("Content-Type", "")
        is_json = "json" in ctype
        fname = f"{kind}.json" if is_json else f"{kind}.txt"
        text = json.dumps(resp.json(), indent=2) + "\n" if is_json else resp.text
        (out_dir / fname).write_text(text)
        index[kind] = {
            "method": method, "path": path,
            "request_headers": {k: masks.get(h, h if k != "X-SLURM-USER-TOKEN" else "<bad>")
                                for k, h in headers.items()},
            "request_body": body, "status": resp.status_code, "content_type": ctype,
            "file": fname, **({"note": note} if note else {}),
        }
        print(f"{kind:28s} {resp.status_code}")
        return resp

    def job(script, name, **extra):
        j = {"name": name, "partition": args.partition, "current_working_directory": "/tmp",
             "environment": {"PATH": "/bin:/usr/bin"}, "standard_output": "/dev/null",
             "standard_error": "/dev/null", "comment": f"fixture:{name}", **extra}
        return {"script": script, "job": j}

    call("ping", "GET", f"{prefix}/ping")
    call("ping_bad_token", "GET", f"{prefix}/ping", tok="not-a-jwt")
    call("diag", "GET", f"{prefix}/diag")
    call("partitions", "GET", f"{prefix}/partitions")
    call("nodes", "GET", f"{prefix}/nodes")
    ok = call("submit", "POST", f"{prefix}/job/submit", as_user=user,
              body=job("#!/bin/bash\necho hello from $SLURM_JOB_ID\n", "ok",
                       time_limit=5, memory_per_node=100, nodes="1", tasks_per_node=1,
                       cpus_per_task=1), note="root token as user").json()["job_id"]
    failing = call("submit_failing", "POST", f"{prefix}/job/submit", as_user=user,
                   body=job("#!/bin/bash\nexit 3\n", "failing")).json()["job_id"]
    held = call("submit_held", "POST", f"{prefix}/job/submit", as_user=user,
                body=job("#!/bin/bash\ntrue\n", "held", hold=True)).json()["job_id"]
    sleep = call("submit_sleep", "POST", f"{prefix}/job/submit", as_user=user,
                 body=job("#!/bin/bash\nsleep 300\n", "sleep")).json()["job_id"]
    timeout = call("submit_timeout", "POST", f"{prefix}/job/submit", as_user=user,
                   body=job("#!/bin/bash\nsleep 600\n", "timeout", time_limit=1),
                   note="time_limit 1 minute, sleeps 600 s").json()["job_id"]
    call("submit_bad_partition", "POST", f"{prefix}/job/submit", as_user=user,
         body={**job("#!/bin/bash\ntrue\n", "bad"), "job": {**job("", "bad")["job"],
                                                           "partition": "no-such-partition"}})
    no_env = job("#!/bin/bash\ntrue\n", "noenv")
    del no_env["job"]["environment"]
    call("submit_no_environment", "POST", f"{prefix}/job/submit", as_user=user, body=no_env)
    call("submit_unknown_field", "POST", f"{prefix}/job/submit", as_user=user,
         body={**job("#!/bin/bash\ntrue\n", "x"), "job": {**job("", "x")["job"], "bogus": 1}})
    call("submit_bad_token", "POST", f"{prefix}/job/submit", as_user=user, tok="not-a-jwt",
         body=job("#!/bin/bash\ntrue\n", "badtoken"))
    time.sleep(3)
    call("job_pending", "GET", f"{prefix}/job/{held}", note="held job")
    call("job_running", "GET", f"{prefix}/job/{sleep}")
    call("job_completed", "GET", f"{prefix}/job/{ok}")
    call("job_completed_as_user", "GET", f"{prefix}/job/{ok}", as_user=user)
    call("job_failed", "GET", f"{prefix}/job/{failing}", note="exit 3")
    call("job_not_found", "GET", f"{prefix}/job/999999")
    call("job_bad_token", "GET", f"{prefix}/job/{ok}", tok="not-a-jwt")
    call("cancel", "DELETE", f"{prefix}/job/{sleep}", as_user=user)
    call("job_cancelled", "GET", f"{prefix}/job/{sleep}", note="just after DELETE")
    call("cancel_pending", "DELETE", f"{prefix}/job/{held}", as_user=user)
    call("cancel_again", "DELETE", f"{prefix}/job/{sleep}", as_user=user)
    call("cancel_not_found", "DELETE", f"{prefix}/job/999999")
    time.sleep(2)
    call("job_cancelled_final", "GET", f"{prefix}/job/{sleep}")
    call("jobs", "GET", f"{prefix}/jobs")
    call("jobs_since_past", "GET", f"{prefix}/jobs?update_time=1",
         note="update_time in the past: every job")
    time.sleep(1)
    call("jobs_since_unchanged", "GET", f"{prefix}/jobs?update_time={int(time.time())}",
         note="update_time = now, nothing changed since: HTTP 304, no body")
    print("waiting for the 1-minute time limit ...")
    for _ in range(60):
        state = requests.get(args.base + f"{prefix}/job/{timeout}", timeout=10, headers={
            "X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": tokens["root"]}).json()
        if state["jobs"][0]["job_state"] == "TIMEOUT":
            break
        time.sleep(3)
    call("job_timeout", "GET", f"{prefix}/job/{timeout}")
    resp = requests.get(args.base + "/openapi/v3", timeout=30, headers={
        "X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": tokens["root"]})
    paths = {"paths": {p: {} for p in resp.json()["paths"]}}
    (out_dir.parent / "openapi-v3-paths.json").write_text(
        json.dumps(paths, indent=2) + "\n")
    (out_dir / "index.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
