"""``POST /submit`` answered in front of Flask (``SubmitPath``) must be the answer Flask
gives: same status, headers, body, record, metrics, for success and for every error.
Each case is sent once through the whole app and once to the Flask app alone (the
layer's ``flask``), each with its own store, and the two exchanges are compared."""
from __future__ import annotations

import copy
import json
import re

import flask
import pytest
from werkzeug.test import Client

from app import create_app
from app.blueprints.submit import SubmitPath
from app.errors import SlurmRejected, SlurmTimeout, StoreUnavailable
from app.memory_store import MemoryTaskStore

from tests.conftest import FakeSlurmClient, hello_task

UUID = "0b5d4c1e-6f1a-4d8e-9c3b-2a7e5f6d8c90"


def app_for(keys, **config):
    store, slurm = MemoryTaskStore(), FakeSlurmClient()
    app = create_app({"SLURM_PROXY_RATE_LIMIT": "", **config}, store=store, slurm=slurm,
                     keys=keys[0], environ={})
    return app, store, slurm


def task(**overrides):
    return hello_task(uuid=UUID, **overrides)


def without_email(**overrides):
    body = task(**overrides)
    del body["notification"]
    return body


SENT = {"json": lambda t: {"data": json.dumps({"task": t}), "content_type": "application/json"},
        "form": lambda t: {"data": json.dumps({"task": t})}}    # wget --post-data: no type


def exchange(wsgi, keys, key_name, body, path="/submit"):
    """One request through ``wsgi``: (status, headers without Date, body)."""
    headers = {"Authorization": f"Bearer {keys[1][key_name]}"} if key_name else {}
    resp = Client(wsgi).post(path, headers=headers, **body)
    return resp.status_code, [(k, v) for k, v in resp.headers if k != "Date"], resp.get_data()


CASES = {
    "valid, JSON": ("someone", SENT["json"](task())),
    "valid, no content type (wget)": ("someone", SENT["form"](without_email())),
    "valid, trailing slash": ("someone", SENT["json"](task()), "/submit/"),
    "no key": (None, SENT["json"](task())),
    "invalid key": ("bogus", SENT["json"](task())),
    "key without the submit role": ("reader", SENT["json"](task())),
    "another user's task": ("other", SENT["json"](task())),
    "missing cwd": ("someone", SENT["json"]({k: v for k, v in task().items() if k != "cwd"})),
    "bad mem": ("someone", SENT["json"](task(slurm={**task()["slurm"], "mem": "lots"}))),
    "unknown field": ("someone", SENT["json"](task(colour="blue"))),
    "not JSON": ("someone", {"data": b"{task: ", "content_type": "application/json"}),
    "not UTF-8": ("someone", {"data": b'{"task": "\xff"}'}),
    "a JSON list": ("someone", {"data": b"[1, 2]"}),
    "empty body": ("someone", {"data": b""}),
    "too large": ("someone", {"data": b"{" + b" " * 2_000_000 + b"}"}),
    "a query string": ("someone", SENT["json"](task()), "/submit?x=1"),
}


def keys_with_bogus(keys):
    store, plain = keys
    return store, {**plain, "bogus": "sp_000000000000_notarealkeynotarealkeynotarealkey"}


@pytest.mark.parametrize("case", list(CASES))
def test_the_layer_answers_as_flask_does(keys, case):
    keys = keys_with_bogus(keys)
    key_name, body, *path = CASES[case]
    answers = []
    for through_flask in (False, True):
        app, store, _ = app_for(keys)
        assert isinstance(app.wsgi_app, SubmitPath)
        wsgi = app.wsgi_app.flask if through_flask else app
        answers.append((*exchange(wsgi, keys, key_name, copy.deepcopy(body), *path),
                        store.get(UUID)))
    layer, plain = answers
    assert layer[:3] == plain[:3], case
    assert strip_times(layer[3]) == strip_times(plain[3]), case


def strip_times(record):
    if record is None:
        return None
    record = copy.deepcopy(record)
    for field in ("created_at", "updated_at", "_id"):
        record.pop(field, None)
    for entry in record.get("history", []):
        entry.pop("at", None)
    return json.loads(re.sub(r'"\d{4}-\d\d-\d\dT[^"]*"', '"T"', json.dumps(record, default=str)))


FAILURES = {
    "slurmrestd refuses": lambda app, store, slurm: setattr(
        slurm, "fail_with", SlurmRejected("Invalid partition name specified",
                                          errors={"slurm_errors": [{"error_code": 2000}]})),
    "slurmrestd times out": lambda app, store, slurm: setattr(
        slurm, "fail_with", SlurmTimeout("slurmrestd did not answer within 30 s.")),
    "duplicate uuid": lambda app, store, slurm: Client(app.wsgi_app.flask).post(
        "/submit", json={"task": task()}, headers={"Authorization": AUTH[0]}),
    "a bug": lambda app, store, slurm: setattr(store, "insert", None),   # TypeError inside
    "the key store is down": lambda app, store, slurm: setattr(
        app.extensions["slurm_proxy"].keys, "get", down),
}


def down(*args):
    raise StoreUnavailable("MongoDB is not reachable (reading API keys).")
AUTH: list[str] = []


@pytest.mark.parametrize("case", list(FAILURES))
def test_errors_inside_the_submit_are_answered_as_flask_does(keys, case, caplog):
    AUTH[:] = [f"Bearer {keys[1]['someone']}"]
    answers = []
    for through_flask in (False, True):
        app, store, slurm = app_for(keys)
        FAILURES[case](app, store, slurm)
        wsgi = app.wsgi_app.flask if through_flask else app
        answers.append((*exchange(wsgi, keys, "someone", SENT["json"](task())),
                        strip_times(store.get(UUID)) if case != "a bug" else None))
    assert answers[0] == answers[1]
    assert answers[0][0] in (409, 500, 502, 503, 504)
    if case == "a bug":
        assert json.loads(answers[0][2])["code"] == "internal"
        assert sum("unhandled error" in r.getMessage() for r in caplog.records) == 2


def test_the_layer_takes_plain_submits_and_flask_the_rest(keys):
    """A valid submit never reaches Flask (no request context is made for it); the
    other cases do, and are answered there."""
    keys = keys_with_bogus(keys)
    app, store, slurm = app_for(keys)
    seen = []

    def started(sender, **extra):
        seen.append(flask.request.path)

    flask.request_started.connect(started, app)
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {keys[1]['someone']}"}
        assert client.post("/submit", json={"task": hello_task()}, headers=auth).status_code == 200
        assert seen == [] and len(slurm.submitted) == 1
        assert client.post("/submit", json={"task": {}}, headers=auth).status_code == 400
        assert client.post("/submit", json={"task": hello_task()}).status_code == 401
        assert seen == ["/submit", "/submit"] and len(slurm.submitted) == 1
    finally:
        flask.request_started.disconnect(started, app)


def test_with_a_per_key_limit_the_layer_counts_and_answers_as_flask_does(keys):
    """The same budget, the same headers, the same 429, whichever path answers: three
    submits under "2/minute", then a bad body over the limit (Flask's limit answers
    before the body is read), then a valid one."""
    sequences = []
    for through_flask in (False, True):
        app, store, slurm = app_for(keys, SLURM_PROXY_RATE_LIMIT="2/minute")
        wsgi = app.wsgi_app.flask if through_flask else app
        sequence = []
        for body in (task(), hello_task(), hello_task(), {"cwd": 1}, hello_task()):
            status, headers, payload = exchange(wsgi, keys, "someone", SENT["json"](body))
            sequence.append((status, timeless(headers), re.sub(rb'[0-9a-f]{8}-[0-9a-f-]{27}', b"U", payload)))
        sequences.append(sequence)
        assert len(slurm.submitted) == 2
    assert sequences[0] == sequences[1]
    statuses = [s[0] for s in sequences[0]]
    assert statuses == [200, 200, 429, 429, 429]
    ok, limited = dict(sequences[0][1][1]), dict(sequences[0][2][1])
    assert (ok["X-RateLimit-Limit"], ok["X-RateLimit-Remaining"]) == ("2", "0")
    assert (limited["X-RateLimit-Limit"], limited["X-RateLimit-Remaining"]) == ("2", "0")
    assert json.loads(sequences[0][2][2])["code"] == "rate_limited"


def timeless(headers):
    """Reset and Retry-After are times: the same within a second or two, not equal."""
    out = []
    for name, value in headers:
        if name in ("X-RateLimit-Reset", "Retry-After"):
            assert int(value) > 0, (name, value)
            value = "N"
        out.append((name, value))
    return out


def test_submits_through_the_layer_are_counted_in_metrics(keys):
    app, store, slurm = app_for(keys)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {keys[1]['admin']}"}

    def count(outcome):
        text = client.get("/metrics", headers=auth).get_data(as_text=True)
        found = re.search(r'^slurm_proxy_submits_total\{outcome="%s"\} (\S+)$' % outcome, text, re.M)
        return float(found.group(1)) if found else 0.0

    ok, invalid, rejected = count("ok"), count("invalid"), count("slurm_rejected")
    assert client.post("/submit", json={"task": hello_task()}, headers=auth).status_code == 200
    assert client.post("/submit", json={"task": {}}, headers=auth).status_code == 400
    slurm.fail_with = SlurmRejected("no")
    assert client.post("/submit", json={"task": hello_task()}, headers=auth).status_code == 502
    assert (count("ok"), count("invalid"), count("slurm_rejected")) == (ok + 1, invalid + 1,
                                                                        rejected + 1)


def test_behind_a_trusted_proxy_the_layer_sees_the_forwarded_address(keys):
    """ProxyFix stays outermost: the access line and the per-address limit read the
    client's address whichever path answers."""
    app, store, slurm = app_for(keys, SLURM_PROXY_TRUSTED_PROXIES=1)
    seen = {}
    inner = app.wsgi_app.app
    assert isinstance(inner, SubmitPath)

    def spy(environ, start_response):
        seen["addr"] = environ["REMOTE_ADDR"]
        return inner(environ, start_response)

    app.wsgi_app.app = spy
    resp = Client(app).post("/submit", json={"task": hello_task()},
                            headers={"Authorization": f"Bearer {keys[1]['someone']}",
                                     "X-Forwarded-For": "198.51.100.9"})
    assert resp.status_code == 200 and seen["addr"] == "198.51.100.9"


def test_with_authentication_off_the_layer_answers_as_flask_does(keys):
    answers = []
    for through_flask in (False, True):
        app, store, slurm = app_for(keys, SLURM_PROXY_AUTH=False)
        wsgi = app.wsgi_app.flask if through_flask else app
        answers.append((exchange(wsgi, keys, None, SENT["json"](task())), strip_times(store.get(UUID))))
        assert len(slurm.submitted) == 1
    assert answers[0] == answers[1] and answers[0][0][0] == 200
