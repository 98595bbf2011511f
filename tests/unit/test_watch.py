"""Waiting without asking Slurm: the change feed, long polls and event streams."""
from __future__ import annotations

import itertools
import json
import threading
import time

import pytest

from app.memory_store import MemoryTaskStore
from app.store import TaskStore
from app.tasks import new_record
from app.watch import ChangeFeed, wait_until_final
from tests.conftest import authorized, hello_task, make_job


_JOB_IDS = itertools.count(1000)


def add(store, state="PENDING", username="someone"):
    # One active task per job id (the store's unique index): each its own job.
    record = new_record(hello_task(username=username), state=state, source="submit",
                        job_id=next(_JOB_IDS))
    store.insert(record)
    return store.get(record["task"]["uuid"])


def test_one_query_per_interval_whatever_the_number_of_waiters():
    """Several processes on one MongoDB: the feed asks the store at most once per
    interval for all of its waiters, and wakes the right ones."""
    store = TaskStore.in_memory()
    feed = ChangeFeed(store, interval=0.5)
    records = [add(store) for _ in range(300)]
    subs = [feed.subscribe(uuid=r["task"]["uuid"]) for r in records]
    everyone = feed.subscribe(users=None)
    someone_else = feed.subscribe(users=["other"])
    assert feed.waiters == 302
    time.sleep(0.7)
    for sub in subs + [everyone, someone_else]:     # the first query looks back OVERLAP
        sub.get(0)
    # "Another process" (the poller) records a change in the shared store.
    target = records[123]
    assert store.update_state(target["task"]["uuid"], state="RUNNING", expected="PENDING")
    got = subs[123].get(3)
    assert [e["slurm_job_state"] for e in got] == ["RUNNING"]
    assert subs[0].get(0) == [] and someone_else.get(0) == []
    assert [e["task"]["uuid"] for e in everyone.get(1)] == [target["task"]["uuid"]]
    started, before = time.monotonic(), feed.queries
    time.sleep(2.0)
    elapsed = time.monotonic() - started
    assert feed.queries - before <= elapsed / 0.5 + 1        # 300 waiters, ~4 queries
    for sub in subs + [everyone, someone_else]:
        feed.unsubscribe(sub)
    time.sleep(0.6)
    idle = feed.queries
    time.sleep(1.2)
    assert feed.queries == idle                              # nobody waits: no query
    feed.close()


def test_embedded_store_signals_in_process_without_queries():
    store = MemoryTaskStore()
    feed = ChangeFeed(store, interval=0.5)
    record = add(store)
    sub = feed.subscribe(uuid=record["task"]["uuid"])
    store.update_state(record["task"]["uuid"], state="RUNNING", expected="PENDING")
    assert [e["slurm_job_state"] for e in sub.get(0.1)] == ["RUNNING"]
    assert feed.queries == 0


@pytest.mark.parametrize("kind", ["memory", "mongomock"])
def test_wait_until_final_wakes_at_the_change(kind):
    store = MemoryTaskStore() if kind == "memory" else TaskStore.in_memory()
    feed = ChangeFeed(store, interval=0.2)
    record = add(store, state="RUNNING")
    uuid = record["task"]["uuid"]
    threading.Timer(0.5, lambda: store.update_state(uuid, state="FAILED", expected="RUNNING",
                                                    fields={"exit_code": 3})).start()
    started = time.monotonic()
    final = wait_until_final(feed, store, record, 10)
    assert final["slurm_job_state"] == "FAILED" and final["exit_code"] == 3
    assert 0.4 < time.monotonic() - started < 4
    assert feed.waiters == 0
    other = add(store, state="RUNNING")
    started = time.monotonic()
    assert wait_until_final(feed, store, other, 0.5)["slurm_job_state"] == "RUNNING"
    assert 0.5 <= time.monotonic() - started < 3
    feed.close()


def read_events(resp, until_event="end", limit=20):
    """The parsed (event, data) pairs of an SSE response, up to ``until_event``."""
    out, buffer = [], ""
    for chunk in resp.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.splitlines()
                          if ": " in line and not line.startswith(":"))
            if "event" in fields:
                out.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
                if fields["event"] == until_event or len(out) >= limit:
                    return out
    return out


def submit(client, **changes):
    task = hello_task(**changes)
    resp = client.post("/submit", json={"task": task})
    assert resp.status_code == 200, resp.get_json()
    return task["uuid"], resp.get_json()["slurm_job_id"]


def test_task_stream_shows_every_state_until_final(app, client, fake_slurm, store):
    from app.tracking import record_job_state

    uuid, job_id = submit(client)
    reads = []
    real_get_job = fake_slurm.get_job
    fake_slurm.get_job = lambda job: reads.append(job) or real_get_job(job)

    def run_job():
        for state in ("RUNNING", "COMPLETED"):
            time.sleep(0.4)
            fake_slurm.jobs[job_id] = make_job(job_id, state)
            record_job_state(store, store.get(uuid), real_get_job(job_id))

    threading.Thread(target=run_job).start()
    resp = client.get(f"/monitor/task_uuid/{uuid}/events", buffered=False)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    events = read_events(resp)
    states = [data["slurm_job_state"] for event, data, _ in events if event == "state"]
    assert states == ["PENDING", "RUNNING", "COMPLETED"]
    assert events[-2][1]["final"] is True and events[-2][1]["exit_code"] == 0
    assert events[-1][0] == "end"
    assert all(e[2] and e[2].isdigit() for e in events[:-1])          # resumable ids
    assert reads == []
    assert list(resp.response) == []                                 # the stream ended
    # A final task's stream answers its state and ends at once.
    again = client.get(f"/monitor/task_uuid/{uuid}/events")
    assert [line for line in again.get_data(as_text=True).splitlines()
            if line.startswith("event:")] == ["event: state", "event: end"]
    assert app.extensions["slurm_proxy"].feed.waiters == 0


def test_streams_show_only_what_the_key_may_see(app, keys, client, store):
    mine, _ = submit(client)
    theirs, _ = submit(client, username="other", cwd="/home/other")
    someone = authorized(app, keys[1]["someone"])
    assert someone.get(f"/monitor/task_uuid/{theirs}/events").status_code == 403
    assert someone.get("/monitor/task_uuid/nope/events").status_code == 404
    assert app.test_client().get("/monitor/events").status_code == 401
    assert someone.get("/monitor/events?username=other").status_code == 403
    assert someone.get("/monitor/events?username=bad%20name").status_code == 400
    resp = someone.get("/monitor/events", buffered=False)
    assert resp.status_code == 200

    def changes():
        time.sleep(0.3)
        store.update_state(theirs, state="RUNNING", expected="PENDING")
        store.update_state(mine, state="RUNNING", expected="PENDING")

    threading.Thread(target=changes).start()
    seen = []
    while (mine, "RUNNING") not in seen:      # (a MongoDB feed may repeat a current state)
        seen += [(d["uuid"], d["slurm_job_state"]) for _, d, _ in read_events(resp, "state")]
    assert {uuid for uuid, _ in seen} == {mine}
    resp.close()
    # Resuming with Last-Event-ID replays what was missed, still only the key's own.
    resumed = someone.get("/monitor/events", headers={"Last-Event-ID": "1000"}, buffered=False)
    replay = read_events(resumed, until_event="never", limit=1)   # theirs changed first
    assert [(d["uuid"], d["slurm_job_state"]) for _, d, _ in replay] == [(mine, "RUNNING")]
    resumed.close()
