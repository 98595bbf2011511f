"""Several real poller processes sharing one store: one leads, the others stand by;
the leader is SIGKILLed and a standby takes over within two intervals, sending every
notification exactly once."""
from __future__ import annotations

import copy
import json
import signal
import time

import pytest
from werkzeug import Response

from tests.conftest import FIXTURES
from tests.helpers import add_task
from tests.integration.test_notify_e2e import start_poller, until, wire_store

INTERVAL = 1.0


@pytest.fixture
def switchable_slurmrestd(httpserver):
    """The recorded 22.05 GET /jobs answer, with the finished jobs still RUNNING until
    ``finish()``; counts requests."""
    finished = json.loads((FIXTURES / "slurm-22.05" / "v0.0.38" / "jobs.json").read_text())
    running = copy.deepcopy(finished)
    ids = []
    for job in running["jobs"]:
        if job["job_state"] == "COMPLETED":
            job["job_state"] = "RUNNING"
            ids.append(job["job_id"])
    state = {"body": running, "requests": 0}

    def answer(request):
        state["requests"] += 1
        return Response(json.dumps(state["body"]), content_type="application/json")

    httpserver.expect_request("/slurm/v0.0.38/jobs").respond_with_handler(answer)
    state["finish"] = lambda: state.update(body=finished)
    return httpserver.url_for("/").rstrip("/"), ids, state


def holder(store):
    lease = store.lease("poller:default")
    return lease["holder"] if lease else None


def test_the_standby_takes_over_within_two_intervals_without_duplicates(
        wire, switchable_slurmrestd, smtp):
    slurm_url, job_ids, slurmrestd = switchable_slurmrestd
    store = wire_store(wire)
    uuids = [add_task(store, job_id, state="RUNNING") for job_id in job_ids]
    env = {"SLURM_POLL_INTERVAL": str(INTERVAL)}
    leader = start_poller(wire, slurm_url, smtp.port, **env)
    standby = None
    try:
        until(lambda: holder(store) and f":{leader.pid}:" in holder(store))
        standby = start_poller(wire, slurm_url, smtp.port, **env)
        # The standby is up and not polling: slurmrestd hears from one poller only.
        time.sleep(3 * INTERVAL)
        before = slurmrestd["requests"]
        time.sleep(3 * INTERVAL)
        assert slurmrestd["requests"] - before <= 4          # ~1 per interval, not 2
        assert f":{leader.pid}:" in holder(store)
        leader.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leader.wait(10)
        slurmrestd["finish"]()                               # the jobs end meanwhile
        until(lambda: f":{standby.pid}:" in (holder(store) or ""), timeout=10, step=0.05)
        took_over = time.monotonic() - killed
        assert took_over <= 2 * INTERVAL + 0.5, took_over
        until(lambda: all(store.get(u).get("deliveries") and
                          all(d["status"] == "sent" for d in store.get(u)["deliveries"])
                          for u in uuids), timeout=20)
        time.sleep(3 * INTERVAL)                              # more cycles: nothing more
    finally:
        for p in (leader, standby):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
    assert len(smtp.inbox.messages) == len(uuids)
    assert len({m["Message-ID"] for m in smtp.inbox.messages}) == len(uuids)
    for uuid in uuids:
        assert [h["state"] for h in store.get(uuid)["history"]] == ["RUNNING", "COMPLETED"]
