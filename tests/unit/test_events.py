"""POST /events/slurm/jobcomp: what slurmctld's jobcomp/elasticsearch plugin sends,
and the slurm-proxy-event forwarder."""
from __future__ import annotations

import base64
import logging

import pytest

from app import create_app
from app.forwarder import event_from_environment, main as forward
from tests.conftest import make_job
from tests.helpers import add_task

SECRET = "s3cret-for-events-0123"
SCRIPT = "#!/bin/sh\necho TOP-SECRET-SCRIPT-TEXT\n"


def doc(job_id, state="COMPLETED", **more):
    """A document as the plugin posts it (DESIGN.md §8)."""
    return {"jobid": job_id, "username": "someone", "user_id": 1001, "state": state,
            "exit_code": "0:0", "derived_ec": "0:0", "@submit": "2026-12-02T01:38:12",
            "@start": "2026-12-02T01:38:13", "@end": "2026-12-02T01:38:14", "elapsed": 1,
            "partition": "hpcz-test", "nodes": "localhost", "work_dir": "/tmp",
            "std_out": "/dev/null", "job_name": "wrap", "script": SCRIPT, **more}


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def events_app(store, fake_slurm, keys):
    return create_app({"SLURM_EVENT_SECRET": f"old-secret-being-rotated,{SECRET}"},
                      store=store, slurm=fake_slurm, keys=keys[0], environ={})


def post(app, body, headers):
    return app.test_client().post("/events/slurm/jobcomp", json=body, headers=headers)


def test_an_event_records_the_state_slurm_confirms_and_queues_the_mail(events_app, store,
                                                                      fake_slurm, caplog):
    uuid = add_task(store, 501, state="RUNNING")
    fake_slurm.jobs[501] = make_job(501, "COMPLETED")
    caplog.set_level(logging.DEBUG)
    resp = post(events_app, doc(501), basic("default", SECRET))
    assert resp.status_code == 201 and resp.get_json()["result"] == "created"
    record = store.get(uuid)
    assert record["slurm_job_state"] == "COMPLETED"
    assert [d["state"] for d in record["deliveries"]] == ["COMPLETED"]
    # The batch script in the document is never stored or logged.
    assert "TOP-SECRET-SCRIPT-TEXT" not in repr(record)
    assert "TOP-SECRET-SCRIPT-TEXT" not in caplog.text
    assert store.last_beat("events:default") is not None
    # The same event again (slurmctld resends after a restart) changes nothing.
    assert post(events_app, doc(501), basic("default", SECRET)).status_code == 200
    assert len(store.get(uuid)["deliveries"]) == 1


def test_the_old_secret_still_works_while_rotating(events_app, store, fake_slurm):
    add_task(store, 502, state="RUNNING")
    fake_slurm.jobs[502] = make_job(502, "FAILED", exit_code=1)
    assert post(events_app, doc(502, "FAILED"), basic("default", "old-secret-being-rotated")
                ).status_code == 201


@pytest.mark.parametrize("headers", [
    {}, basic("default", "wrong-secret-wrong-secret"), basic("other-cluster", SECRET),
    {"Authorization": "Basic !!!notbase64"}, {"Authorization": f"Bearer {SECRET}"}])
def test_wrong_or_missing_secret_is_401_and_changes_nothing(events_app, store, fake_slurm,
                                                            headers):
    uuid = add_task(store, 503, state="RUNNING")
    fake_slurm.jobs[503] = make_job(503, "COMPLETED")
    resp = post(events_app, doc(503), headers)
    assert resp.status_code == 401 and resp.get_json()["code"] == "unauthorized"
    assert store.get(uuid)["slurm_job_state"] == "RUNNING"
    assert store.last_beat("events:default") is None


def test_no_secret_configured_refuses_every_event(store, fake_slurm, keys):
    app = create_app({}, store=store, slurm=fake_slurm, keys=keys[0], environ={})
    assert post(app, doc(1), basic("default", "")).status_code == 401


def test_a_forged_event_changes_nothing_slurm_does_not_confirm(events_app, store, fake_slurm):
    uuid = add_task(store, 504, state="RUNNING")
    fake_slurm.jobs[504] = make_job(504, "RUNNING")          # Slurm: still running
    resp = post(events_app, doc(504, "FAILED"), basic("default", SECRET))
    assert resp.status_code == 201
    record = store.get(uuid)
    assert record["slurm_job_state"] == "RUNNING" and not record.get("deliveries")


def test_a_job_that_is_not_ours_is_ignored(events_app, store, fake_slurm):
    fake_slurm.jobs[505] = make_job(505, "COMPLETED", user="other")
    resp = post(events_app, doc(505), basic("default", SECRET))
    assert resp.status_code == 200 and resp.get_json()["result"] == "noop"


@pytest.mark.parametrize("body,field", [([1, 2], "body"), ({"state": "COMPLETED"}, "jobid"),
                                        ({"jobid": "abc"}, "jobid"), ({"jobid": -4}, "jobid")])
def test_a_bad_document_is_400_naming_the_field(events_app, body, field):
    resp = post(events_app, body, basic("default", SECRET))
    assert resp.status_code == 400 and field in resp.get_json()["errors"]


def test_the_forwarder_posts_the_jobs_variables_only_and_always_exits_0(httpserver):
    environ = {"JOBID": "77", "JOBSTATE": "COMPLETED", "EXITCODE": "0:0", "USERNAME": "someone",
               "SLURM_PROXY_EVENT_URL": httpserver.url_for("/events/slurm/jobcomp").replace(
                   "http://", f"http://default:{SECRET}@"),
               "AWS_SECRET_ACCESS_KEY": "never-sent"}
    httpserver.expect_oneshot_request(
        "/events/slurm/jobcomp", method="POST",
        headers=basic("default", SECRET)).respond_with_json({"result": "created"}, status=201)
    assert forward([], environ) == 0
    httpserver.check_assertions()
    body = httpserver.log[0][0].get_json()
    assert body["jobid"] == 77 and body["state"] == "COMPLETED" and body["username"] == "someone"
    assert "never-sent" not in repr(body)
    # Nobody listening, no URL, no job id: still 0.
    assert forward(["--url", "http://127.0.0.1:9/x"], {"JOBID": "1"}) == 0
    assert forward([], {"JOBID": "1", "SLURM_PROXY_EVENT_URL_FILE": "/nonexistent"}) == 0
    assert forward([], {"SLURM_PROXY_EVENT_URL": "http://127.0.0.1:9/x"}) == 0


def test_the_forwarder_reads_an_epilog_environment():
    event = event_from_environment({"SLURM_JOB_ID": "12", "SLURM_JOB_USER": "someone",
                                    "SLURM_JOB_EXIT_CODE2": "3:0"})
    assert event["jobid"] == 12 and event["username"] == "someone"
    assert event["source"] == "EpilogSlurmctld" and event["exit_code"] == "3:0"


def test_polling_relaxes_only_while_events_come_in_time(events_app, store, fake_slurm):
    """After an outage slurmctld sends its backlog, oldest first: those events say
    nothing about jobs ending now, so polling keeps its short interval until they do."""
    from datetime import datetime, timedelta

    from app.poller import Poller

    poller = Poller(store, fake_slurm, interval=10, interval_with_events=60)
    poller.check_events()
    assert poller.current_interval() == 10                  # no event yet

    def local(ago):
        return (datetime.now() - timedelta(seconds=ago)).isoformat(timespec="seconds")

    backlog = doc(601, **{"@end": local(3600)})             # a job that ended an hour ago
    assert post(events_app, backlog, basic("default", SECRET)).status_code == 200
    poller.check_events()
    assert poller.current_interval() == 10

    timely = doc(602, **{"@end": local(1)})
    assert post(events_app, timely, basic("default", SECRET)).status_code == 200
    poller.check_events()
    assert poller.current_interval() == 60

    # The forwarder's events carry no @end; slurmctld runs it as the job ends.
    forwarded = event_from_environment({"JOBID": "603", "JOBSTATE": "COMPLETED"})
    post(events_app, backlog, basic("default", SECRET))
    poller.check_events()
    assert poller.current_interval() == 10
    assert post(events_app, forwarded, basic("default", SECRET)).status_code == 200
    poller.check_events()
    assert poller.current_interval() == 60
