"""``slurm-proxy-event``: tell slurm-proxy that a job ended, from slurmctld's host.

For sites whose ``JobCompType`` is already taken (so the jobcomp/elasticsearch plugin
cannot post to the service itself): run it as ``JobCompLoc`` with
``JobCompType=jobcomp/script``, or as ``EpilogSlurmctld``. slurmctld runs it with the
job in its environment (jobcomp/script: JOBID, JOBSTATE, EXITCODE, USERNAME, ...;
EpilogSlurmctld: SLURM_JOB_ID, SLURM_JOB_USER, SLURM_JOB_EXIT_CODE, ...); it posts
those variables (never anything else from the environment) to
``POST /events/slurm/jobcomp`` with a short timeout, and always exits 0 so that it
never holds up or fails a job. slurmctld passes no arguments, so the URL (with the
cluster name and event secret as its user and password) comes from, in order:
``--url``, SLURM_PROXY_EVENT_URL, or the file named by SLURM_PROXY_EVENT_URL_FILE
(default ``/etc/slurm/slurm-proxy-event-url``, readable by SlurmUser only).
"""
from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

DEFAULT_URL_FILE = "/etc/slurm/slurm-proxy-event-url"
TIMEOUT = 3.0
# The job's facts slurmctld puts in the environment of jobcomp/script and
# EpilogSlurmctld programs; nothing else is sent.
JOB_VARIABLES = (
    "JOBID", "JOBSTATE", "EXITCODE", "DERIVED_EC", "USERNAME", "USER", "UID", "GID",
    "JOBNAME", "PARTITION", "NODECNT", "PROCS", "START", "END", "SUBMIT", "ELIGIBLE",
    "LIMIT", "WORK_DIR", "ACCOUNT", "QOS", "ARRAYJOBID", "ARRAYTASKID",
    "SLURM_JOB_ID", "SLURM_JOB_USER", "SLURM_JOB_UID", "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION", "SLURM_JOB_EXIT_CODE", "SLURM_JOB_EXIT_CODE2",
    "SLURM_JOB_DERIVED_EC", "SLURM_JOB_ACCOUNT", "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID", "SLURM_CLUSTER_NAME", "SLURM_SCRIPT_CONTEXT",
)


def event_from_environment(environ) -> dict:
    env = {k: environ[k] for k in JOB_VARIABLES if k in environ}
    job_id = env.get("JOBID") or env.get("SLURM_JOB_ID")
    return {
        "jobid": int(job_id) if job_id and job_id.isdigit() else job_id,
        "state": env.get("JOBSTATE"),
        "username": env.get("USERNAME") or env.get("SLURM_JOB_USER"),
        "exit_code": env.get("EXITCODE") or env.get("SLURM_JOB_EXIT_CODE2")
        or env.get("SLURM_JOB_EXIT_CODE"),
        "source": "jobcomp/script" if "JOBID" in env else "EpilogSlurmctld",
        "env": env,
    }


def event_url(argv, environ) -> str | None:
    if len(argv) >= 2 and argv[0] == "--url":
        return argv[1]
    if environ.get("SLURM_PROXY_EVENT_URL"):
        return environ["SLURM_PROXY_EVENT_URL"]
    try:
        with open(environ.get("SLURM_PROXY_EVENT_URL_FILE") or DEFAULT_URL_FILE,
                  encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def post(url: str, event: dict, timeout: float = TIMEOUT) -> int:
    """POST the event; the URL's user and password become HTTP Basic credentials."""
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json"}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        if ":" in (parts.hostname or "") and not host.startswith("["):
            host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    req = urllib.request.Request(url, data=json.dumps(event).encode(), headers=headers,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status


def main(argv=None, environ=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    try:
        url = event_url(argv, environ)
        if not url:
            print("slurm-proxy-event: no URL (set SLURM_PROXY_EVENT_URL or write it to "
                  f"{DEFAULT_URL_FILE})", file=sys.stderr)
            return 0
        event = event_from_environment(environ)
        if not event["jobid"]:
            print("slurm-proxy-event: no JOBID or SLURM_JOB_ID in the environment",
                  file=sys.stderr)
            return 0
        status = post(url, event)
        if status not in (200, 201):
            print(f"slurm-proxy-event: job {event['jobid']}: HTTP {status}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - never fail a job's completion over a hint
        # Only the class: a message could quote the URL, which holds the secret.
        print(f"slurm-proxy-event: not sent ({exc.__class__.__name__})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
