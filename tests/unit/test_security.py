"""Authentication, authorization, hostile input, outbound limits, rate limits, docs."""
from __future__ import annotations

import copy
import json
import re
import time

import pytest

from app import create_app
from app.auth import ROLES, FileKeyStore
from app.errors import ConfigError
from app.keys import main as keys_main
from tests.conftest import HELLO_TASK, authorized, hello_task, make_job


def routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static",):
            continue
        url = re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule.replace("<path:filename>", "x.js"))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def test_every_route_but_health_refuses_a_request_without_a_key(store, fake_slurm, keys):
    # (with no per-address limit, which has its own test: this one sends many requests)
    app = create_app({"SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT": ""}, store=store,
                     slurm=fake_slurm, keys=keys[0], environ={})
    anonymous = app.test_client()
    checked = 0
    for endpoint, method, url in routes(app):
        resp = anonymous.open(url, method=method, json={})
        if endpoint in ("health.healthz", "health.readyz"):
            assert resp.status_code in (200, 503) and resp.is_json, url   # public
            continue
        if endpoint in ("ui.login", "ui.static"):          # the sign-in page and its files
            continue
        if endpoint.startswith("ui.") and method == "GET" and resp.status_code == 302:
            assert resp.headers["Location"].startswith("/ui/login"), url   # page: sign in first
            continue
        if endpoint.startswith("ui.") and method == "POST":
            assert resp.status_code == 401, url                            # page: sign in first
            assert "Not signed in" in resp.get_data(as_text=True), url
            continue
        checked += 1
        assert resp.status_code == 401, (method, url, resp.status_code)
        assert resp.get_json()["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert checked >= 12
    assert anonymous.get("/no/such/route").status_code == 401


@pytest.mark.parametrize("header", [
    "Bearer sp_000000000000_notarealkeynotarealkeynotarealkey",
    "Bearer sp_short", "Basic dXNlcjpwYXNz", "Bearer", "bearer  ",
])
def test_bad_keys_are_401(app, header):
    resp = app.test_client().get("/monitor/task_uuid/x", headers={"Authorization": header})
    assert resp.status_code == 401


def test_revoked_key_is_401(app, keys):
    store, plain = keys
    key_id = plain["someone"].split("_")[1]
    client = authorized(app, plain["someone"])
    assert client.get("/monitor/task_uuid/x").status_code == 404
    assert store.revoke(key_id)
    assert client.get("/monitor/task_uuid/x").status_code == 401


def test_roles(app, keys):
    reader = authorized(app, keys[1]["reader"])
    resp = reader.post("/submit", json={"task": hello_task()})
    assert resp.status_code == 403 and "'submit' role" in resp.get_json()["message"]
    someone = authorized(app, keys[1]["someone"])
    assert someone.get("/slurm/ping").status_code == 403          # admin only


def test_a_key_only_acts_for_its_users(app, keys, fake_slurm, store):
    someone = authorized(app, keys[1]["someone"])
    other_task = hello_task(username="other", cwd="/home/other")
    resp = someone.post("/submit", json={"task": other_task})
    assert resp.status_code == 403
    assert "may not act for user 'other'" in resp.get_json()["message"]
    assert fake_slurm.submitted == [] and store.get(other_task["uuid"]) is None
    # another user's task is not readable, by uuid or by job id
    other = authorized(app, keys[1]["other"])
    assert other.post("/submit", json={"task": other_task}).status_code == 200
    job_id = store.get(other_task["uuid"])["slurm_job_id"]
    assert someone.get(f"/monitor/task_uuid/{other_task['uuid']}").status_code == 403
    assert someone.get(f"/monitor/slurm_job_id/{job_id}").status_code == 403
    monitor = {"monitor": {"task": {"uuid": "0f0e0d0c-0b0a-4000-8000-000000000009",
                                    "username": "other"}, "slurm_job_id": 5}}
    assert someone.post("/monitor", json=monitor).status_code == 403


def test_root_is_never_acted_for_even_with_a_star_key(client, fake_slurm):
    resp = client.post("/submit", json={"task": hello_task(username="root", cwd="/root")})
    assert resp.status_code == 403 and "never acts for user 'root'" in resp.get_json()["message"]
    assert fake_slurm.submitted == []


def test_authentication_off_is_loopback_only(store, fake_slurm):
    with pytest.raises(ConfigError, match="loopback"):
        create_app({"SLURM_PROXY_AUTH": False, "SLURM_PROXY_HOST": "0.0.0.0"},
                   store=store, slurm=fake_slurm, environ={})
    app = create_app({"SLURM_PROXY_AUTH": False}, store=store, slurm=fake_slurm, environ={})
    assert app.test_client().post("/submit", json={"task": hello_task()}).status_code == 200


def task_with(**changes):
    task = copy.deepcopy(HELLO_TASK)
    task["uuid"] = hello_task()["uuid"]
    for path, value in changes.items():
        node = task
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return {"task": task}


HOSTILE = [
    ("oversized body", b"{" + b" " * (2 * 1024 * 1024) + b"}", 413, None),
    ("malformed JSON", b'{"task": {', 400, "body"),
    ("not UTF-8", b'{"task": "\xc3\x28"}', 400, "body"),
    ("huge array", json.dumps(task_with(params=["x"] * 10_000)).encode(), 400, "task.params"),
    ("huge string", json.dumps(task_with(cmd="x" * 100_000)).encode(), 400, "task.cmd"),
    ("NUL in a path", json.dumps(task_with(cwd="/home/someone\x00/x")).encode(), 400, "task.cwd"),
    ("newline + #SBATCH in job name", json.dumps(task_with(
        slurm__job_name="x\n#SBATCH --uid=0")).encode(), 400, "task.slurm.job_name"),
    ("newline in a parameter", json.dumps(task_with(params=["a\nrm -rf ~"])).encode(), 400,
     "task.params.0"),
    ("carriage return in partition", json.dumps(task_with(slurm__partition="a\rb")).encode(), 400,
     "task.slurm.partition"),
    ("relative path", json.dumps(task_with(dirs__output="out")).encode(), 400, "task.dirs.output"),
    ("dot-dot segment", json.dumps(task_with(dirs__error="/home/someone/../../etc")).encode(), 400,
     "task.dirs.error"),
    ("path in a file name", json.dumps(task_with(slurm__output="../../.bashrc")).encode(), 400,
     "task.slurm.output"),
    ("wrong type", json.dumps(task_with(slurm__nodes="1; rm -rf /")).encode(), 400, "task.slurm.nodes"),
    ("escape in environment", json.dumps(task_with(slurm__environment={"A": "\x1b]0;x"})).encode(),
     400, "task.slurm.environment"),
    ("command for a canned task type", json.dumps({"task": {**task_with()["task"],
                                                            "name": "echo_hello_world"}}).encode(),
     400, "task.cmd"),
    ("webhook to cloud metadata", json.dumps(task_with(notification={
        "methods": ["webhook"], "params": {"webhook": {"url": "http://169.254.169.254/latest"}}})).encode(),
     400, "task.notification.params.webhook.url"),
    ("webhook to loopback over https", json.dumps(task_with(notification={
        "methods": ["webhook"], "params": {"webhook": {"url": "https://127.0.0.1:8443/x"}}})).encode(),
     400, "task.notification.params.webhook.url"),
    ("webhook to a private address", json.dumps(task_with(notification={
        "methods": ["webhook"], "params": {"webhook": {"url": "https://10.1.2.3/hook"}}})).encode(),
     400, "task.notification.params.webhook.url"),
    ("webhook to localhost", json.dumps(task_with(notification={
        "methods": ["webhook"], "params": {"webhook": {"url": "https://localhost/hook"}}})).encode(),
     400, "task.notification.params.webhook.url"),
    ("webhook with credentials", json.dumps(task_with(notification={
        "methods": ["webhook"], "params": {"webhook": {"url": "https://u:p@hooks.example.org/"}}})).encode(),
     400, "task.notification.params.webhook.url"),
]


@pytest.mark.parametrize("name,body,status,field", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_refused_with_no_side_effect(client, fake_slurm, store, name, body,
                                                      status, field):
    resp = client.post("/submit", data=body, content_type="application/json")
    assert resp.status_code == status, resp.get_data()[:300]
    assert resp.is_json
    if field:
        assert field in resp.get_json()["errors"], resp.get_json()
    assert fake_slurm.submitted == []
    assert store.active_tasks() == []


def confined_app(store, fake_slurm, keys, **config):
    return authorized(create_app(config, store=store, slurm=fake_slurm, keys=keys[0], environ={}),
                      keys[1]["admin"])


def test_paths_outside_the_allowed_prefixes_are_refused(store, fake_slurm, keys):
    client = confined_app(store, fake_slurm, keys,
                          SLURM_PROXY_ALLOWED_PATH_PREFIXES="/home/{username},/project")
    assert client.post("/submit", json=task_with()).status_code == 200
    body = task_with(cwd="/etc", dirs__output="/home/other/out", dirs__error="/project/x")
    resp = client.post("/submit", json=body)
    assert resp.status_code == 400
    assert set(resp.get_json()["errors"]) == {"task.cwd", "task.dirs.output"}
    assert len(fake_slurm.submitted) == 1


def test_notification_targets_outside_the_allowlists_are_refused(store, fake_slurm, keys):
    client = confined_app(store, fake_slurm, keys, NOTIFICATIONS_SMTP_ALLOWED_DOMAINS="example.org",
                          NOTIFICATIONS_SLACK_ALLOWED_CHANNELS="#jobs")
    body = task_with(notification={"methods": ["email", "slack"], "params": {
        "email": {"recipient": ["a@example.org", "victim@elsewhere.net"]},
        "slack": {"channel": "#general"}}})
    resp = client.post("/submit", json=body)
    assert resp.status_code == 400
    assert set(resp.get_json()["errors"]) == {"task.notification.params.email.recipient",
                                              "task.notification.params.slack.channel"}
    assert fake_slurm.submitted == []


def test_operator_allowed_networks_let_an_internal_webhook_through(store, fake_slurm, keys):
    client = confined_app(store, fake_slurm, keys,
                          NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS="10.1.0.0/16")
    ok = task_with(notification={"methods": ["webhook"], "params": {
        "webhook": {"url": "https://10.1.2.3/hook"}}})
    assert client.post("/submit", json=ok).status_code == 200


def test_rate_limit_answers_429_with_retry_after(store, fake_slurm, keys):
    client = confined_app(store, fake_slurm, keys, SLURM_PROXY_RATE_LIMIT="3/minute")
    codes = [client.get("/monitor/task_uuid/x").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    resp = client.get("/monitor/task_uuid/x")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    assert resp.get_json()["code"] == "rate_limited"
    # per key: another key is not affected; health never is
    other = authorized(client.application, keys[1]["other"])
    assert other.get("/monitor/task_uuid/x").status_code == 404
    assert all(client.get("/healthz").status_code == 200 for _ in range(5))


def test_docs_are_served_locally(client, app):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.get_data(as_text=True))
    assert sources and all(s.startswith("/docs/static/") for s in sources)    # no CDN
    for source in sources:
        assert client.get(source).status_code == 200, source
    assert b"SwaggerUIBundle" in client.get("/docs/static/swagger-ui-bundle.js").data
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert app.test_client().get("/docs").status_code == 401


def test_docs_can_be_made_public(store, fake_slurm, keys):
    app = create_app({"SLURM_PROXY_PUBLIC_DOCS": True}, store=store, slurm=fake_slurm,
                     keys=keys[0], environ={})
    anonymous = app.test_client()
    assert anonymous.get("/docs").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200
    assert anonymous.get("/monitor/task_uuid/x").status_code == 401


def test_key_command_creates_lists_and_revokes(tmp_path, monkeypatch, capsys, store, fake_slurm):
    path = tmp_path / "keys.json"
    monkeypatch.setenv("SLURM_PROXY_API_KEYS_FILE", str(path))
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert keys_main(["create", "--name", "ci", "--users", "someone", "--roles",
                      "submit,read", "--quiet"]) == 0
    key = capsys.readouterr().out.strip()
    assert re.fullmatch(r"sp_[0-9a-f]{12}_\S+", key)
    assert key not in path.read_text()                     # only the hash is stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    app = create_app({}, store=store, slurm=fake_slurm, keys=FileKeyStore(str(path)), environ={})
    client = authorized(app, key)
    assert client.post("/submit", json={"task": hello_task()}).status_code == 200
    assert keys_main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and "someone" in listing and key.split("_", 2)[2] not in listing
    assert keys_main(["revoke", key.split("_")[1]]) == 0
    assert client.get("/monitor/task_uuid/x").status_code == 401
    with pytest.raises(SystemExit):
        keys_main(["create", "--name", "x", "--users", "a", "--roles", "superuser"])


def test_star_key_reads_every_users_tasks_and_read_role_cannot_register(app, keys, fake_slurm):
    admin = authorized(app, keys[1]["admin"])
    task = hello_task()
    job_id = admin.post("/submit", json={"task": task}).get_json()["slurm_job_id"]
    fake_slurm.jobs[job_id] = make_job(job_id, "RUNNING")
    assert authorized(app, keys[1]["reader"]).get(f"/monitor/task_uuid/{task['uuid']}").status_code == 200
    body = {"monitor": {"task": {"uuid": "0f0e0d0c-0b0a-4000-8000-00000000000a",
                                 "username": "someone"}, "slurm_job_id": 9}}
    assert authorized(app, keys[1]["reader"]).post("/monitor", json=body).status_code == 403
    assert ROLES == ("submit", "read", "cancel", "admin")


def metric(client, name, **labels):
    """A counter's value as /metrics shows it (0 when absent)."""
    text = client.get("/metrics").get_data(as_text=True)
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_requests_without_a_valid_key_are_limited_per_address_not_per_key(store, fake_slurm, keys):
    app = create_app({"SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT": "3/minute",
                      "SLURM_PROXY_RATE_LIMIT": "4/minute"},
                     store=store, slurm=fake_slurm, keys=keys[0], environ={})
    scraper = authorized(create_app({"SLURM_PROXY_RATE_LIMIT": ""}, store=store, slurm=fake_slurm,
                                    keys=keys[0], environ={}), keys[1]["admin"])
    missing = metric(scraper, "slurm_proxy_auth_failures_total", reason="missing")
    invalid = metric(scraper, "slurm_proxy_auth_failures_total", reason="invalid")
    limited = metric(scraper, "slurm_proxy_unauthenticated_limited_total")
    attacker = app.test_client()
    bad = {"Authorization": "Bearer sp_000000000000_notarealkeynotarealkeynotarealkey"}
    codes = [attacker.get("/monitor/task_uuid/x").status_code,
             attacker.get("/monitor/task_uuid/x", headers=bad).status_code,
             attacker.post("/submit", json={}).status_code,
             attacker.get("/monitor/task_uuid/x", headers=bad).status_code]
    assert codes == [401, 401, 401, 429]
    resp = attacker.get("/monitor")
    assert resp.status_code == 429 and resp.is_json
    assert resp.get_json()["code"] == "rate_limited" and int(resp.headers["Retry-After"]) > 0
    assert "without a valid API key" in resp.get_json()["message"]
    # A valid key from the same address: its own budget (4/minute), untouched.
    legit = authorized(app, keys[1]["someone"])
    assert [legit.get("/monitor/task_uuid/x").status_code for _ in range(5)] == [404] * 4 + [429]
    # Another address is not limited; health never is.
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert elsewhere.get("/monitor").status_code == 401
    assert all(attacker.get("/healthz").status_code == 200 for _ in range(5))
    # Counted in /metrics: 4 without a key (3 from the attacker, one of them refused
    # with 429; 1 from elsewhere), 2 with an invalid one, 2 refused by the limit.
    assert metric(scraper, "slurm_proxy_auth_failures_total", reason="missing") == missing + 4
    assert metric(scraper, "slurm_proxy_auth_failures_total", reason="invalid") == invalid + 2
    assert metric(scraper, "slurm_proxy_unauthenticated_limited_total") == limited + 2


def test_without_a_per_key_limit_keys_are_never_limited_but_addresses_still_are(
        store, fake_slurm, keys):
    """SLURM_PROXY_RATE_LIMIT empty: nothing is counted for keys at all, yet the
    per-address limit for requests without a valid key still counts."""
    app = create_app({"SLURM_PROXY_RATE_LIMIT": "", "SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT": "2/minute"},
                     store=store, slurm=fake_slurm, keys=keys[0], environ={})
    legit = authorized(app, keys[1]["someone"])
    answers = [legit.get("/monitor/task_uuid/x") for _ in range(30)]
    assert [r.status_code for r in answers] == [404] * 30
    assert not any(h.startswith("X-RateLimit") for r in answers for h in r.headers.keys())
    attacker = app.test_client()
    assert [attacker.get("/monitor").status_code for _ in range(3)] == [401, 401, 429]
    assert legit.get("/monitor/task_uuid/x").status_code == 404      # a key: its own way
    # With a per-key limit the headers say how much is left.
    limited = authorized(create_app({"SLURM_PROXY_RATE_LIMIT": "5/minute"}, store=store,
                                    slurm=fake_slurm, keys=keys[0], environ={}), keys[1]["someone"])
    assert limited.get("/monitor/task_uuid/x").headers["X-RateLimit-Remaining"] == "4"


def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
        store, fake_slurm, keys):
    def blocked_after_two(config, forwarded_for):
        app = create_app({"SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT": "2/minute", **config},
                         store=store, slurm=fake_slurm, keys=keys[0], environ={})
        client = app.test_client()
        codes = [client.get("/monitor", headers={"X-Forwarded-For": ip}).status_code
                 for ip in forwarded_for]
        return codes

    # Without a trusted proxy the header is ignored: one address, whatever it says.
    assert blocked_after_two({}, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [401, 401, 429]
    # Behind one proxy, each client is counted on its own.
    assert blocked_after_two({"SLURM_PROXY_TRUSTED_PROXIES": 1},
                             ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [401, 401, 401]
    assert blocked_after_two({"SLURM_PROXY_TRUSTED_PROXIES": 1},
                             ["198.51.100.1"] * 3) == [401, 401, 429]


def test_bad_rate_limit_settings_stop_the_service(store, fake_slurm):
    with pytest.raises(ConfigError, match="SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT"):
        create_app({"SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT": "lots"}, store=store,
                   slurm=fake_slurm, environ={})


def test_of_several_limits_the_shortest_window_is_counted_first_and_shown(store, fake_slurm, keys):
    client = confined_app(store, fake_slurm, keys, SLURM_PROXY_RATE_LIMIT="5/hour;3/minute")
    answers = [client.get("/monitor/task_uuid/x") for _ in range(4)]
    assert [a.status_code for a in answers] == [404, 404, 404, 429]
    assert [(a.headers["X-RateLimit-Limit"], a.headers["X-RateLimit-Remaining"])
            for a in answers] == [("3", "2"), ("3", "1"), ("3", "0"), ("3", "0")]
    assert 0 < int(answers[0].headers["Retry-After"]) <= 61
    assert int(answers[0].headers["X-RateLimit-Reset"]) > time.time()
    assert "3 per 1 minute" in answers[3].get_json()["message"]
    # another route has its own budget
    assert client.get("/monitor?limit=1").headers["X-RateLimit-Remaining"] == "2"


def test_a_limit_storage_outage_lets_requests_through_and_says_so(store, fake_slurm, keys, caplog):
    client = confined_app(store, fake_slurm, keys, SLURM_PROXY_RATE_LIMIT="1/minute")

    class Down:
        def hit(self, *args):
            raise ConnectionError("storage down")

    client.application.wsgi_app.key_limit._counter._strategy = Down()
    answers = [client.get("/monitor/task_uuid/x") for _ in range(3)]
    assert [a.status_code for a in answers] == [404] * 3
    assert not any(h.startswith("X-RateLimit") for a in answers for h in a.headers.keys())
    assert "per-key limit not counted: ConnectionError" in caplog.text
