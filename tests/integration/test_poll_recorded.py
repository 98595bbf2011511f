"""The poller against slurmrestd stand-ins (pytest-httpserver) serving the answers
recorded on real Slurm 24.11.7 and 26.05.3: on v0.0.40+ only our own jobs are asked
about (/jobs/state), only changed ones read in full; "no change" (200, "jobs": [] and a
warning) leaves every task alone."""
from __future__ import annotations

import copy
import json

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


def client_for(httpserver, version):
    auth = SlurmAuth("key", "slurm", key=b"k" * 32, lifespan=600)
    return SlurmClient(Transport(httpserver.url_for("/").rstrip("/"), auth), version)


def snapshot(store, uuids):
    return {u: copy.deepcopy(store.get(u)) for u in uuids}


@pytest.mark.parametrize("release,version", MODERN, ids=[f"{r}/v{v}" for r, v in MODERN])
def test_only_our_jobs_are_watched_and_only_a_changed_one_is_read(httpserver, release, version):
    states = recorded(release, version, "jobs_state.json")
    completed = recorded(release, version, "job_completed.json")
    done_id = completed["jobs"][0]["job_id"]
    prefix = f"/slurm/v{version}"
    asked: list[str] = []

    def jobs_state(request):
        asked.append(request.args.get("job_id", ""))
        return Response(json.dumps(states), content_type="application/json")

    httpserver.expect_request(f"{prefix}/jobs/state").respond_with_handler(jobs_state)
    httpserver.expect_request(f"{prefix}/job/{done_id}").respond_with_json(completed)
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
    poller.run_once()
    # One /jobs/state request naming exactly our active jobs; one full read, of the
    # job whose state changed.
    assert [sorted(int(i) for i in a.split(",")) for a in asked] == [sorted(uuids)]
    full = [r.path for r, _ in httpserver.log if "/job/" in r.path]
    assert full == [f"{prefix}/job/{done_id}"]
    others = [u for j, u in uuids.items() if j != done_id]
    before = snapshot(store, others)
    if is_terminal(*normalize_state(completed["jobs"][0]["job_state"])):
        assert store.get(uuids[done_id])["slurm_job_state"] == "COMPLETED"
        assert [e["state"] for e, *_ in email.sent] == ["COMPLETED"]
        # Next cycle: the finished task is no longer asked about, nothing read in full.
        poller.run_once()
        assert sorted(int(i) for i in asked[-1].split(",")) == \
            sorted(j for j in uuids if j != done_id)
        assert [r.path for r, _ in httpserver.log if "/job/" in r.path] == full
    else:
        # Recorded while slurmctld still finished it (COMPLETED+COMPLETING): nothing is
        # recorded yet, and the next cycle reads it again.
        assert store.get(uuids[done_id])["slurm_job_state"] == "RUNNING" and not email.sent
        poller.run_once()
        assert [r.path for r, _ in httpserver.log if "/job/" in r.path] == full * 2
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
