"""Bad payloads -> 400 naming the field; good ones load as the decisions of DESIGN.md §2."""
from __future__ import annotations

import copy

import pytest

from app.schemas.task import SubmitSchema
from tests.conftest import HELLO_TASK


def with_change(path: str, value, *, delete: bool = False) -> dict:
    task = copy.deepcopy(HELLO_TASK)
    *parents, last = path.split(".")
    node = task
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return {"task": task}


BAD = [
    # (change, value, field named in the error)
    ("name", "no_such_task", "task.name"),
    ("slurm.mem", "1000", "task.slurm.mem"),
    ("slurm.mem", 0, "task.slurm.mem"),
    ("slurm.mem", 1.5, "task.slurm.mem"),
    ("slurm.mem", True, "task.slurm.mem"),
    ("slurm.nodes", -1, "task.slurm.nodes"),
    ("slurm.time", "1:2:3:4", "task.slurm.time"),
    ("slurm.time", -1, "task.slurm.time"),
    ("slurm.time", 525601, "task.slurm.time"),
    ("slurm.time", "123456", "task.slurm.time"),
    ("slurm.time", "ten minutes", "task.slurm.time"),
    ("slurm.time", [5], "task.slurm.time"),
    ("slurm.partition", "a b", "task.slurm.partition"),
    ("slurm.job_name", "x\n#SBATCH --uid=0", "task.slurm.job_name"),
    ("slurm.output", "../../etc/passwd", "task.slurm.output"),
    ("slurm.output", "a/b.txt", "task.slurm.output"),
    ("slurm.environment", "NOEQUALS", "task.slurm.environment"),
    ("slurm.environment", {"BAD-NAME": "x"}, "task.slurm.environment"),
    ("slurm.environment", ["A=1", 2], "task.slurm.environment"),
    ("slurm.environment", {"A": "x\ny"}, "task.slurm.environment"),
    ("slurm.bogus", 1, "task.slurm.bogus"),
    ("bogus", 1, "task.bogus"),
    ("dirs.parent", "relative/path", "task.dirs.parent"),
    ("dirs.output", "/home/someone/../root", "task.dirs.output"),
    ("dirs.error", "/tmp/x\x00y", "task.dirs.error"),
    ("dirs.extra", "/tmp", "task.dirs.extra"),
    ("cwd", "home/someone", "task.cwd"),
    ("uuid", "not-a-uuid", "task.uuid"),
    ("username", "-rf", "task.username"),
    ("username", "root\nx", "task.username"),
    ("cmd", "echo\r", "task.cmd"),
    ("cmd", "", "task.cmd"),
    ("params", "not a list", "task.params"),
    ("params", ["ok", 3], "task.params.1"),
    ("params", ["a\x1b[31m"], "task.params.0"),
    ("params", ["x"] * 257, "task.params"),
    ("notification.methods", ["pigeon"], "task.notification.methods.0"),
    ("notification.params", {"email": {"recipient": "not an address"}},
     "task.notification.params.email.recipient"),
    ("notification.params", {"email": {"recipient": "a@b.org", "cc": "x"}},
     "task.notification.params.email.cc"),
    ("notification.params", {"fax": {}}, "task.notification.params.fax"),
    ("notification.on", ["SOMETIMES"], "task.notification.on.0"),
]

MISSING = ["name", "username", "cwd", "uuid", "slurm", "dirs", "dirs.output", "dirs.error"]


@pytest.mark.parametrize("path,value,field", BAD)
def test_bad_payload_is_400_naming_the_field(client, fake_slurm, path, value, field):
    resp = client.post("/submit", json=with_change(path, value))
    assert resp.status_code == 400, resp.get_json()
    body = resp.get_json()
    assert body["code"] == "invalid_request"
    assert field in body["errors"], body["errors"]
    assert field in body["message"]
    assert fake_slurm.submitted == []


@pytest.mark.parametrize("path", MISSING)
def test_missing_required_field_is_named(client, fake_slurm, path):
    resp = client.post("/submit", json=with_change(path, None, delete=True))
    assert resp.status_code == 400
    assert f"task.{path}" in resp.get_json()["errors"]
    assert fake_slurm.submitted == []


def test_generic_task_needs_cmd(client):
    resp = client.post("/submit", json=with_change("cmd", None, delete=True))
    assert resp.status_code == 400
    assert "task.cmd" in resp.get_json()["errors"]


def test_email_needs_a_recipient_after_merge(client):
    resp = client.post("/submit", json=with_change("notification.params", {"email": {}}))
    assert resp.status_code == 400
    assert "task.notification.params.email.recipient" in resp.get_json()["errors"]


@pytest.mark.parametrize("given,minutes", [
    (30, 30), ("90", 90), ("1:30", 2), ("1:30:00", 90), ("2-00:00:00", 2880),
    ("1-12", 2160), ("0-0:1", 1), ("1-2:3", 1563),
])
def test_time_is_minutes_or_a_slurm_time_string(given, minutes):
    loaded = SubmitSchema().load(with_change("slurm.time", given))
    assert loaded["task"]["slurm"]["time"] == minutes


def test_time_zero_leaves_the_limit_to_the_partition(client, fake_slurm):
    assert client.post("/submit", json=with_change("slurm.time", 0)).status_code == 200
    assert fake_slurm.submitted[0][0].time_limit is None


@pytest.mark.parametrize("given,expected", [
    ("PATH=/bin/:/usr/bin/:/sbin/", {"PATH": "/bin/:/usr/bin/:/sbin/"}),
    (["PATH=/bin", "OMP_NUM_THREADS=4"], {"PATH": "/bin", "OMP_NUM_THREADS": "4"}),
    ({"PATH": "/bin", "X": "a=b"}, {"PATH": "/bin", "X": "a=b"}),
])
def test_environment_forms(given, expected):
    loaded = SubmitSchema().load(with_change("slurm.environment", given))
    assert loaded["task"]["slurm"]["environment"] == expected


def test_rabbithq_is_an_alias_of_rabbitmq():
    loaded = SubmitSchema().load(with_change("notification", {
        "methods": ["rabbithq"], "params": {"rabbithq": {"msg": "done"}}}))
    notification = loaded["task"]["notification"]
    assert notification["methods"] == ["rabbitmq"]
    assert notification["params"] == {"rabbitmq": {"msg": "done"}}


def test_uuid_is_stored_canonical():
    loaded = SubmitSchema().load(with_change("uuid", "123E4567E89B12D3A456426614174000"))
    assert loaded["task"]["uuid"] == "123e4567-e89b-12d3-a456-426614174000"


def test_paths_are_normalised():
    loaded = SubmitSchema().load(with_change("dirs.output", "/home/someone//out/./x/"))
    assert loaded["task"]["dirs"]["output"] == "/home/someone/out/x"


def test_the_reference_readme_example_loads_unchanged():
    loaded = SubmitSchema().load({"task": copy.deepcopy(HELLO_TASK)})
    assert loaded["task"]["slurm"]["mem"] == 1000
    assert loaded["task"]["slurm"]["ntasks_per_node"] == 1


def test_body_that_is_not_json_is_400(client):
    resp = client.post("/submit", data=b"{not json", content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["code"] == "invalid_request"


def test_non_utf8_body_is_400(client):
    resp = client.post("/submit", data=b'{"task": "\xff\xfe"}', content_type="application/json")
    assert resp.status_code == 400
    assert resp.is_json


def test_json_array_body_is_400(client):
    resp = client.post("/submit", json=[1, 2])
    assert resp.status_code == 400
    assert resp.is_json
