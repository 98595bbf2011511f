"""Shared field types (``app/schemas/fields.py``) and the one 400 builder: a bad
cluster name, user name or cursor gets the same clear answer naming the field,
wherever it is given."""
from __future__ import annotations

import pytest

from tests.conftest import hello_task

BAD_CLUSTER = "no/such cluster"


@pytest.mark.parametrize("path", ["/cluster", "/slurm/ping", "/monitor/slurm_job_id/5"])
def test_a_bad_cluster_name_in_a_query_is_named_alike_everywhere(client, path):
    resp = client.get(path, query_string={"cluster": BAD_CLUSTER})
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["code"] == "invalid_request"
    assert body["errors"] == {"cluster": ["Not a valid cluster name."]}
    assert body["message"] == "Invalid request: cluster: Not a valid cluster name."


def test_a_bad_cluster_name_in_a_task_is_named_alike(client):
    resp = client.post("/submit", json={"task": hello_task(cluster=BAD_CLUSTER)})
    assert resp.status_code == 400
    assert resp.get_json()["errors"] == {"task.cluster": ["Not a valid cluster name."]}


@pytest.mark.parametrize("path", ["/monitor", "/monitor/events"])
def test_a_bad_user_name_in_a_query_says_so(client, path):
    resp = client.get(path, query_string={"username": "bad user"})
    assert resp.status_code == 400
    assert resp.get_json()["errors"] == {"username": ["Not a valid user name."]}


def test_a_bad_cursor_gets_the_same_kind_of_answer(client):
    resp = client.get("/monitor", query_string={"cursor": "12.zz"})
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["errors"] == {"cursor": [body["message"].split(": ", 2)[2]]}
    assert body["message"].startswith("Invalid request: cursor: ")


def test_several_bad_fields_are_all_named_in_one_sorted_message(client):
    task = hello_task(cluster=BAD_CLUSTER, username="bad user")
    body = client.post("/submit", json={"task": task}).get_json()
    assert body["message"] == ("Invalid request: task.cluster: Not a valid cluster name.; "
                               "task.username: Not a valid user name.")
