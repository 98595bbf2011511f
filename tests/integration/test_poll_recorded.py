"""The poller against slurmrestd stand-ins (pytest-httpserver) serving the answers
recorded on real Slurm 24.11.7 and 26.05.3: on v0.0.40+ only our own jobs are asked
about (/jobs/state), only changed ones read in full; then a quiet cycle is one "any
change since T?" (200, "jobs": [] and a warning), which leaves every task alone."""
from __future__ import annotations

import copy
import json
import re

import pytest
from werkzeug import Response

from app.config import SlurmAuth
from app.memory_store import MemoryTaskStore
from app.notify.dispatcher import Dispatcher
from app.poller import Poller
from app.slurm.client import SlurmClient
from app.states import is_terminal, normalize_state
from app.slurm.transport import Transport
from app.slurm.versions import version_key
from tests.conftest import FIXTURES
from tests.helpers import RecordingNotifier, add_task

MODERN = sorted(((d.parent.name, d.name[1:]) for d in FIXTURES.glob("slurm-*/v*")
                 if (d / "jobs_state.json").exists()), key=lambda r: version_key(r[1]))
UNCHANGED = [r for r in MODERN
             if (FIXTURES / r[0] / f"v{r[1]}" / "jobs_since_unchanged.json").exists()]


def recorded(release, version, name):
    return json.loads((FIXTURES / release / f"v{version}" / name).read_text())


def unchanged_answer(release, version):
    """The recorded "no change since update_time" answer. The 24.11.7 recordings did not
    ask it; 24.11 answers as 26.05 does (DESIGN.md section 4), so those use 26.05.3's
    v0.0.42 answer."""
    if (FIXTURES / release / f"v{version}" / "jobs_since_unchanged.json").exists():
        return recorded(release, version, "jobs_since_unchanged.json")
    return recorded("slurm-26.05.3", "0.0.42", "jobs_since_unchanged.json")


def client_for(httpserver, version):
    auth = SlurmAuth("key", "slurm", key=b"k" * 32, lifespan=600)
    return SlurmClient(Transport(httpserver.url_for("/").rstrip("/"), auth), version)


def snapshot(store, uuids):
    return {u: copy.deepcopy(store.get(u)) for u in uuids}


@pytest.mark.parametrize("release,version", MODERN, ids=[f"{r}/v{v}" for r, v in MODERN])
def test_only_our_jobs_are_watched_and_only_a_changed_one_is_read(httpserver, release, version):
    states = recorded(release, version, "jobs_state.json")
    completed = recorded(release, version, "job_completed.json")
    running = recorded(release, version, "job_running.json")
    unchanged = unchanged_answer(release, version)
    done_id = completed["jobs"][0]["job_id"]
    prefix = f"/slurm/v{version}"
    asked: list[str] = []
    probes: list[str] = []

    def jobs_state(request):
        asked.append(request.args.get("job_id", ""))
        return Response(json.dumps(states), content_type="application/json")

    def jobs(request):                       # nothing changes after the first look
        probes.append(request.args["update_time"])
        return Response(json.dumps(unchanged), content_type="application/json")

    httpserver.expect_request(f"{prefix}/jobs/state").respond_with_handler(jobs_state)
    httpserver.expect_request(f"{prefix}/jobs").respond_with_handler(jobs)
    httpserver.expect_request(f"{prefix}/job/{done_id}").respond_with_json(completed)
    # Any other job: the recorded running one (its last_update is slurmctld's clock).
    httpserver.expect_request(re.compile(rf"{re.escape(prefix)}/job/\d+")).respond_with_json(running)
    store, email = MemoryTaskStore(), RecordingNotifier()
    owner = completed["jobs"][0]["user_name"]
    uuids = {}
    for item in states["jobs"]:                 # our tasks, as Slurm last said
        job_id = int(item["job_id"])
        state, _ = normalize_state(item["state"])
        if state in ("PENDING", "RUNNING") or job_id == done_id:
            # The recording's jobs are its user's: so are our tasks (ownership is checked).
            uuids[job_id] = add_task(store, job_id, state="RUNNING" if job_id == done_id
                                     else state, username=owner)
    poller = Poller(store, client_for(httpserver, version),
                    Dispatcher(store, {"email": email}))
    poller.look.probe_min_tasks = 1         # probe however few tasks (the default is 100)
    poller.run_once()
    # slurmctld's clock first (one job's answer), then one /jobs/state request naming
    # exactly our active jobs; one full read, of the job whose state changed.
    assert [sorted(int(i) for i in a.split(",")) for a in asked] == [sorted(uuids)]
    full = [r.path for r, _ in httpserver.log if "/job/" in r.path]
    assert full == [f"{prefix}/job/{min(uuids)}", f"{prefix}/job/{done_id}"]
    assert not probes
    clock = str(running["last_update"]["number"])
    others = [u for j, u in uuids.items() if j != done_id]
    before = snapshot(store, others)
    if is_terminal(*normalize_state(completed["jobs"][0]["job_state"])):
        assert store.get(uuids[done_id])["slurm_job_state"] == "COMPLETED"
        assert [e["state"] for e, *_ in email.sent] == ["COMPLETED"]
        # Next cycles: "any change since slurmctld's time before that look?" answered
        # "no": no job is asked about, nothing read in full, nothing written.
        for _ in range(3):
            counts = poller.run_once()
            assert counts["errors"] == 0 and counts["changed"] == 0
        assert probes == [clock] * 3 and len(asked) == 1
        assert [r.path for r, _ in httpserver.log if "/job/" in r.path] == full
    else:
        # Recorded while slurmctld still finished it (COMPLETED+COMPLETING): nothing is
        # recorded yet, and the next cycle reads it again.
        assert store.get(uuids[done_id])["slurm_job_state"] == "RUNNING" and not email.sent
        poller.run_once()
        # "No change" since, but a job still completing is asked about again, alone.
        assert probes == [clock] and asked[-1] == str(done_id)
        assert [r.path for r, _ in httpserver.log if "/job/" in r.path] == \
            full + [f"{prefix}/job/{done_id}"]
    assert snapshot(store, others) == before


@pytest.mark.parametrize("release,version", UNCHANGED, ids=[f"{r}/v{v}" for r, v in UNCHANGED])
def test_no_change_on_a_recorded_answer_leaves_every_task_alone(httpserver, release, version):
    listing = recorded(release, version, "jobs.json")
    unchanged = recorded(release, version, "jobs_since_unchanged.json")
    assert unchanged["jobs"] == [] and unchanged.get("warnings")
    answers = []

    def jobs(request):
        body = unchanged if request.args.get("update_time") else listing
        answers.append("unchanged" if body is unchanged else "listing")
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request(f"/slurm/v{version}/jobs").respond_with_handler(jobs)
    store = MemoryTaskStore()
    uuids = []
    for job in listing["jobs"]:
        state, flags = normalize_state(job["job_state"])
        if state in ("PENDING", "RUNNING") and not flags:
            # Arrays are watched through the job list on every version.
            uuids.append(add_task(store, job["job_id"], state=state, username=job["user_name"],
                                  slurm={"array": "0-1", "partition": "hpcz-test"}))
    assert uuids
    poller = Poller(store, client_for(httpserver, version), None)
    poller.run_once()
    before = snapshot(store, uuids)
    for _ in range(3):
        counts = poller.run_once()
        assert counts["errors"] == 0 and counts["changed"] == 0
    assert answers == ["listing", "unchanged", "unchanged", "unchanged"]
    after = snapshot(store, uuids)
    assert after == before
    assert all(r["slurm_job_state"] in ("PENDING", "RUNNING") and not r.get("missing_since")
               for r in after.values())


LISTED = [r for r in MODERN if (FIXTURES / r[0] / f"v{r[1]}" / "jobs.json").exists()]


@pytest.mark.parametrize("release,version", LISTED, ids=[f"{r}/v{v}" for r, v in LISTED])
def test_a_changed_answer_is_the_detail_of_every_changed_job(httpserver, release, version):
    """A probe answered with slurmctld's whole job list (something changed): the
    recorded list records each of our ended jobs, with its exit code and times, without
    reading any job again; a task whose job it does not list is marked missing."""
    listing = recorded(release, version, "jobs.json")
    running = recorded(release, version, "job_running.json")
    prefix = f"/slurm/v{version}"
    jobs_of = {j["job_id"]: j for j in listing["jobs"]}
    gone = max(jobs_of) + 1000
    states = {"jobs": [{"job_id": str(i), "state": ["RUNNING"]} for i in [*jobs_of, gone]]}
    probes = []

    def jobs(request):
        probes.append(request.args["update_time"])
        return Response(json.dumps(listing), content_type="application/json")

    httpserver.expect_request(f"{prefix}/jobs/state").respond_with_json(states)
    httpserver.expect_request(f"{prefix}/jobs").respond_with_handler(jobs)
    httpserver.expect_request(re.compile(rf"{re.escape(prefix)}/job/\d+")).respond_with_json(running)
    store, email = MemoryTaskStore(), RecordingNotifier()
    owner = listing["jobs"][0]["user_name"]
    uuids = {i: add_task(store, i, state="RUNNING", username=owner) for i in [*jobs_of, gone]}
    poller = Poller(store, client_for(httpserver, version), Dispatcher(store, {"email": email}))
    poller.look.probe_min_tasks = 1
    poller.run_once()                  # the full look: every job RUNNING, as the tasks say
    assert all(store.get(u)["slurm_job_state"] == "RUNNING" for u in uuids.values())
    reads = len([r for r, _ in httpserver.log if "/job/" in r.path])
    counts = poller.run_once()         # the probe: the whole recorded list
    assert probes == [str(running["last_update"]["number"])]
    assert len([r for r, _ in httpserver.log if "/job/" in r.path]) == reads
    ended = {i: normalize_state(j["job_state"]) for i, j in jobs_of.items()
             if is_terminal(*normalize_state(j["job_state"]))}
    moved = [i for i, j in jobs_of.items() if normalize_state(j["job_state"])[0] != "RUNNING"]
    assert ended and counts["changed"] == len(moved)       # ended, and PENDING again
    adapter = poller.slurm.get(None).adapter
    for job_id, (state, _) in ended.items():
        record = store.get(uuids[job_id])
        job = adapter.parse_job(jobs_of[job_id])
        assert record["slurm_job_state"] == state
        assert record["exit_code"] == job.exit_code
        assert record["end_time"] == job.end_time
    for job_id in set(jobs_of) - set(ended):
        assert store.get(uuids[job_id])["slurm_job_state"] == \
            normalize_state(jobs_of[job_id]["job_state"])[0]
    assert store.get(uuids[gone])["missing_since"] is not None
    assert sorted(e["state"] for e, *_ in email.sent) == sorted(s for s, _ in ended.values())
