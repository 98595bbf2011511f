"""No key can read, hear about, cancel or hide another user's job: every route (but
health, metrics and the docs, which show no job), for {own task, another user's task,
another user's job registered by me}, for {submit, read, cancel, admin} keys, against
the real cluster with PrivateData=jobs on.

"Me" is the cluster user ``eve``; "another user" is ``someone``. eve's keys each have
one role and act for eve only; the admin key is an operator's (every user, every role).
"""
from __future__ import annotations

import pwd
import re
import subprocess
import uuid as uuid_module
from dataclasses import dataclass

import pytest

from app.auth import new_key
from app.tasks import new_record
from tests.conftest import authorized, make_keys
from tests.integration.conftest import PARTITION, TEST_USER, live, slurm_config

pytestmark = pytest.mark.slurm

ME = "eve"
OTHER = TEST_USER                         # someone
SECRET = "secret-project-x"               # the other user's job name: must never leak
KEYS = ("submit", "read", "cancel", "admin")


def _private_data() -> str:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    found = re.search(r"^PrivateData\s*=\s*(\S+)", out, re.M)
    return found.group(1) if found else ""


@pytest.fixture(scope="module")
def cluster():
    try:
        pwd.getpwnam(ME)
    except KeyError:
        pytest.fail(f"no user {ME!r}: run scripts/dev-cluster.sh install")
    assert "jobs" in _private_data().split(","), (
        "slurmctld runs without PrivateData=jobs: run bash scripts/dev-cluster.sh restart")
    app, _ = live({**slurm_config(), "SLURM_PROXY_RATE_LIMIT": ""})
    keys = app.extensions["slurm_proxy"].keys
    clients = {}
    for name, users, roles in [("submit", [ME], ["submit"]), ("read", [ME], ["read"]),
                               ("cancel", [ME], ["cancel"]), ("admin", ["*"], ["admin"]),
                               ("me", [ME], ["submit", "read", "cancel"]),
                               ("other", [OTHER], ["submit", "read", "cancel"])]:
        plaintext, record = new_key(f"{name}-key", users, roles)
        keys.add(record)
        clients[name] = authorized(app, plaintext)
    jobs: list[int] = []
    yield app, clients, jobs
    if jobs:
        subprocess.run(["scancel", *map(str, jobs)], capture_output=True)


def sleep_task(user: str) -> dict:
    home = pwd.getpwnam(user).pw_dir
    base = f"{home}/slurm-proxy-xuser/{uuid_module.uuid4().hex[:8]}"
    return {"uuid": str(uuid_module.uuid4()), "name": "generic", "username": user, "cwd": home,
            "cmd": "sleep", "params": ["300"],
            "slurm": {"partition": PARTITION, "time": 10, "mem": 64, "output": "out.txt",
                      "error": "err.txt", "job_name": SECRET if user == OTHER else "mine"},
            "dirs": {"output": base, "error": base},
            "notification": {"methods": ["email"], "params": {"email": {
                "recipient": f"{user}@example.org"}}}}


@dataclass
class Target:
    kind: str
    uuid: str            # the task's uuid (for "registered": the uuid eve tried to use)
    job_id: int
    owner: str


def make_target(kind: str, cluster) -> Target:
    """A fresh object of each kind, each with its own running or pending Slurm job."""
    app, clients, jobs = cluster
    if kind in ("own", "other"):
        user, client = (ME, clients["me"]) if kind == "own" else (OTHER, clients["other"])
        task = sleep_task(user)
        resp = client.post("/submit", json={"task": task})
        assert resp.status_code == 200, resp.get_json()
        jobs.append(resp.get_json()["slurm_job_id"])
        return Target(kind, task["uuid"], jobs[-1], user)
    # Another user's job, started outside the service; eve tries to register it as hers.
    out = subprocess.run(["runuser", "-u", OTHER, "--", "sbatch", "--parsable", "-J", SECRET,
                          "-p", PARTITION, "--mem=64", "-t", "10", "-o", "/dev/null",
                          "--wrap", "sleep 300"], capture_output=True, text=True, cwd="/tmp")
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout.strip().split(";")[0])
    jobs.append(job_id)
    uuid = str(uuid_module.uuid4())
    resp = clients["me"].post("/monitor", json={"monitor": {"task": {
        "uuid": uuid, "username": ME, "notification": {"methods": ["email"], "params": {
            "email": {"recipient": "eve@example.org"}}}}, "slurm_job_id": job_id}})
    assert resp.status_code == 403, resp.get_json()
    assert app.extensions["slurm_proxy"].store.get(uuid) is None
    return Target(kind, uuid, job_id, OTHER)


def _register(c, t):
    return c.post("/monitor", json={"monitor": {"task": {
        "uuid": str(uuid_module.uuid4()), "username": ME}, "slurm_job_id": t.job_id}})


ROUTES = {
    "GET /monitor/task_uuid/<uuid>": lambda c, t: c.get(f"/monitor/task_uuid/{t.uuid}"),
    "GET /monitor/task_uuid/<uuid>?wait=1": lambda c, t: c.get(f"/monitor/task_uuid/{t.uuid}?wait=1"),
    "GET /monitor/slurm_job_id/<id>": lambda c, t: c.get(f"/monitor/slurm_job_id/{t.job_id}"),
    "GET /monitor?username=<owner>": lambda c, t: c.get(f"/monitor?username={t.owner}"),
    "GET /monitor/task_uuid/<uuid>/output": lambda c, t: c.get(f"/monitor/task_uuid/{t.uuid}/output"),
    "POST /monitor (the job, as mine)": _register,
    "GET /slurm/job/<id>": lambda c, t: c.get(f"/slurm/job/{t.job_id}"),
    "GET /slurm/jobs": lambda c, t: c.get("/slurm/jobs"),
    "GET /cluster": lambda c, t: c.get("/cluster"),
    "POST /submit (a task of the owner's)": lambda c, t: c.post(
        "/submit", json={"task": sleep_task(t.owner)}),
    "POST /monitor/task_uuid/<uuid>/resubmit": lambda c, t: c.post(
        f"/monitor/task_uuid/{t.uuid}/resubmit", json={"task": {"params": ["300"]}}),
    "DELETE /monitor/task_uuid/<uuid>": lambda c, t: c.delete(f"/monitor/task_uuid/{t.uuid}"),
    "DELETE /monitor/slurm_job_id/<id>": lambda c, t: c.delete(f"/monitor/slurm_job_id/{t.job_id}"),
}
# Routes where eve names the other user herself (so the answer may repeat the name).
NAMES_THE_OWNER = {"GET /monitor?username=<owner>", "POST /submit (a task of the owner's)"}
# Routes that change what they touch get a fresh object for each key.
MUTATING = {"POST /monitor/task_uuid/<uuid>/resubmit", "DELETE /monitor/task_uuid/<uuid>",
            "DELETE /monitor/slurm_job_id/<id>"}

READ = {"own": (403, 200, 403, 200), "other": (403, 403, 403, 200),
        "registered": (403, 404, 403, 404)}
CANCEL = {"own": (403, 403, 202, 202), "other": (403, 403, 403, 202),
          "registered": (403, 403, 404, 404)}
#          route -> {object: expected status for the (submit, read, cancel, admin) keys}
EXPECTED = {
    "GET /monitor/task_uuid/<uuid>": READ,
    "GET /monitor/task_uuid/<uuid>?wait=1": READ,
    "GET /monitor/slurm_job_id/<id>": READ,
    "GET /monitor?username=<owner>": {"own": (403, 200, 403, 200), "other": (403, 403, 403, 200),
                                      "registered": (403, 403, 403, 200)},
    # No output prefixes are configured here: 501 once the key may see the task.
    "GET /monitor/task_uuid/<uuid>/output": {"own": (403, 501, 403, 501),
                                             "other": (403, 403, 403, 501),
                                             "registered": (403, 404, 403, 404)},
    # Own: the job is tracked already (409 naming the task); otherwise not eve's job.
    "POST /monitor (the job, as mine)": {"own": (409, 403, 403, 409),
                                         "other": (403, 403, 403, 403),
                                         "registered": (403, 403, 403, 403)},
    "GET /slurm/job/<id>": {kind: (403, 403, 403, 200) for kind in READ},
    "GET /slurm/jobs": {kind: (403, 403, 403, 200) for kind in READ},
    # Counts per partition only: nobody's job in it.
    "GET /cluster": {kind: (403, 200, 403, 200) for kind in READ},
    "POST /submit (a task of the owner's)": {"own": (200, 403, 403, 200),
                                             "other": (403, 403, 403, 200),
                                             "registered": (403, 403, 403, 200)},
    "POST /monitor/task_uuid/<uuid>/resubmit": {"own": (200, 403, 403, 200),
                                                "other": (403, 403, 403, 200),
                                                "registered": (404, 403, 403, 404)},
    "DELETE /monitor/task_uuid/<uuid>": CANCEL,
    "DELETE /monitor/slurm_job_id/<id>": CANCEL,
}
CELLS = [(route, kind, i) for route in ROUTES for kind in ("own", "other", "registered")
         for i in range(len(KEYS))]


@pytest.fixture(scope="module")
def shared_targets(cluster):
    return {kind: make_target(kind, cluster) for kind in ("own", "other", "registered")}


@pytest.mark.parametrize("route,kind,key_index", CELLS,
                         ids=[f"{r} | {k} | {KEYS[i]} key" for r, k, i in CELLS])
def test_cross_user_matrix(cluster, shared_targets, route, kind, key_index):
    app, clients, jobs = cluster
    key = KEYS[key_index]
    target = make_target(kind, cluster) if route in MUTATING else shared_targets[kind]
    resp = ROUTES[route](clients[key], target)
    body = resp.get_data(as_text=True)
    assert resp.status_code == EXPECTED[route][kind][key_index], body[:400]
    assert resp.is_json
    if resp.status_code == 200 and route.startswith("POST") and "slurm_job_id" in resp.get_json():
        jobs.append(resp.get_json()["slurm_job_id"])              # (cancelled at the end)
    if key != "admin" and kind != "own":
        # Nothing of the other user's job reaches eve's keys: not its name, not whose it is.
        assert SECRET not in body
        if route not in NAMES_THE_OWNER:
            assert OTHER not in body, body[:400]
    if key != "admin" and resp.status_code == 200 and route not in NAMES_THE_OWNER:
        assert OTHER not in body and SECRET not in body


def test_a_listing_shows_only_my_own_tasks(cluster, shared_targets):
    app, clients, jobs = cluster
    listed = clients["read"].get("/monitor?limit=500").get_json()["tasks"]
    assert listed and {t["username"] for t in listed} == {ME}
    assert shared_targets["other"].uuid not in {t["uuid"] for t in listed}


def test_the_other_users_lookups_are_not_hijacked(cluster, shared_targets):
    """The issue's second scenario: eve tried to register someone's job (403 in the
    matrix); someone's own lookup by job id still answers with someone's task, live."""
    app, clients, jobs = cluster
    other = shared_targets["other"]
    assert _register(clients["submit"], other).status_code == 403
    resp = clients["other"].get(f"/monitor/slurm_job_id/{other.job_id}")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["monitor"]["task"]["uuid"] == other.uuid
    assert body["slurm"]["user_name"] == OTHER and body["slurm"]["name"] == SECRET


def test_live_reads_go_to_slurm_as_the_owner_so_private_data_applies(cluster, shared_targets):
    """A record of eve's that names someone's job (one made before ownership was
    checked): reading it asks Slurm *as eve*, and Slurm itself refuses to show her the
    job. The same job read by the operator route (the service's identity) is there."""
    app, clients, jobs = cluster
    store = app.extensions["slurm_proxy"].store
    job_id = shared_targets["registered"].job_id
    stale = new_record({"uuid": str(uuid_module.uuid4()), "username": ME, "cluster": "default"},
                       state="LOST", source="monitor", job_id=job_id)
    store.insert(stale)
    resp = clients["read"].get(f"/monitor/task_uuid/{stale['task']['uuid']}")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["slurm"] is None
    # Slurm said "no such job" to eve: PrivateData=jobs, not our own check, hid it.
    assert body["slurm_error"]["code"] == "slurm_job_not_found"
    assert SECRET not in resp.get_data(as_text=True)
    operator = clients["admin"].get(f"/slurm/job/{job_id}").get_data(as_text=True)
    assert SECRET in operator


def test_only_the_owner_hears_of_a_registered_job_and_the_mail_never_says_none(smtp):
    """The issue's first scenario, end to end: someone's sbatch job; eve's attempt to
    register it is refused and records nothing; someone registers it; it is cancelled;
    the poller mails someone, and only someone, naming the job (a registered task has
    no name), never "None"."""
    import time

    from app.poller import build_poller
    from tests.integration.peers import notify_config

    config = {**slurm_config(), "SLURM_PROXY_RATE_LIMIT": ""}
    keys, plain = make_keys(eve=([ME], ["submit", "read"]), someone=([OTHER], ["submit", "read"]))
    app, _ = live(config, keys=keys)
    store = app.extensions["slurm_proxy"].store
    out = subprocess.run(["runuser", "-u", OTHER, "--", "sbatch", "--parsable", "-J", SECRET,
                          "-p", PARTITION, "--mem=64", "-t", "10", "-o", "/dev/null",
                          "--wrap", "sleep 300"], capture_output=True, text=True, cwd="/tmp")
    job_id = int(out.stdout.strip().split(";")[0])
    try:
        def register(who):
            return authorized(app, plain[who]).post("/monitor", json={"monitor": {"task": {
                "uuid": str(uuid_module.uuid4()), "username": ME if who == "eve" else OTHER,
                "notification": {"methods": ["email"], "params": {"email": {
                    "recipient": f"{who}@example.org"}}}}, "slurm_job_id": job_id}})

        assert register("eve").status_code == 403
        mine = register("someone")
        assert mine.status_code == 200
        uuid = mine.get_json()["monitor"]["task"]["uuid"]
        subprocess.run(["scancel", str(job_id)], check=True)
        poller = build_poller(notify_config(smtp_port=smtp.port), store=store,
                              slurm=app.extensions["slurm_proxy"].slurm)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            poller.run_once()
            deliveries = store.get(uuid).get("deliveries") or []
            if deliveries and all(d["status"] == "sent" for d in deliveries):
                break
            time.sleep(0.3)
        assert store.get(uuid)["slurm_job_state"] == "CANCELLED"
        (mail,) = smtp.inbox.messages
        assert mail["To"] == "someone@example.org"
        assert mail["Subject"] == f"[slurm-proxy] job {job_id} CANCELLED"
        body = mail.get_content()
        assert "None" not in body and f"job {job_id} ({uuid})" in body
        assert [t["task"]["username"] for t in store.list_tasks()] == [OTHER]
    finally:
        subprocess.run(["scancel", str(job_id)], capture_output=True)
