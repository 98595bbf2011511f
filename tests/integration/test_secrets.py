"""With every kind of secret configured, failures everywhere must not reveal any of
them: not in logs (every logger, DEBUG), responses, records or error messages."""
from __future__ import annotations

import base64
import json
import logging

from app import create_app
from app.auth import ROLES
from app.config import load_config
from app.memory_store import MemoryTaskStore
from app.poller import build_poller
from tests.conftest import authorized, hello_task, make_keys
from tests.integration.peers import free_port

SECRETS = {
    "SLURM_USER_TOKEN": "slurm-token-SECRET-1",
    "NOTIFICATIONS_SMTP_PASSWORD": "smtp-password-SECRET-3",
    "NOTIFICATIONS_SLACK_TOKEN": "xoxb-slack-SECRET-4",
    "NOTIFICATIONS_WEBHOOK_SECRET": "webhook-SECRET-5",
}
HS256_KEY = b"hs256-key-SECRET-2-0123456789abcdef"
RABBIT_PASSWORD = "amqp-SECRET-6"
APPRISE_PASSWORD = "apprise-SECRET-7"


def test_no_secret_leaks_anywhere(httpserver, smtp, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    # slurmrestd refuses the token the way 22.05 does (HTTP 500, error 5005)
    httpserver.expect_request("/openapi/v3").respond_with_json(
        {"paths": {"/slurm/v0.0.38/ping": {}}})
    httpserver.expect_request("/slurm/v0.0.38/job/submit").respond_with_json(
        {"errors": [{"error_code": 5005, "error": "Zero Bytes were transmitted or received"}]},
        status=500)
    httpserver.expect_request("/api/chat.postMessage").respond_with_json(
        {"ok": False, "error": "invalid_auth"})
    httpserver.expect_request("/hook").respond_with_data("", status=500)
    config = {**SECRETS, "SLURM_BASE_URL": httpserver.url_for("/").rstrip("/"),
              "NOTIFICATIONS_SMTP_HOST": "127.0.0.1", "NOTIFICATIONS_SMTP_PORT": smtp.port,
              "NOTIFICATIONS_SMTP_SECURITY": "none", "NOTIFICATIONS_SMTP_USERNAME": "proxy",
              "NOTIFICATIONS_SLACK_API_URL": httpserver.url_for("/api/"),
              "NOTIFICATIONS_WEBHOOK_ALLOW_HTTP": True,
              "NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
              "NOTIFICATIONS_RABBITMQ_URL": f"amqp://proxy:{RABBIT_PASSWORD}@127.0.0.1:{free_port()}/%2F",
              "NOTIFICATIONS_APPRISE_TARGETS": {
                  "lab": f"json://bot:{APPRISE_PASSWORD}@127.0.0.1:{httpserver.port}/hook"},
              "NOTIFICATIONS_TIMEOUT": 2.0, "NOTIFICATIONS_MAX_ATTEMPTS": 1}
    keys, plain = make_keys(admin=("*", ROLES))
    store = MemoryTaskStore()
    app = create_app(config, store=store, keys=keys, environ={})
    client = authorized(app, plain["admin"])
    bodies = []

    task = hello_task()
    task["notification"] = {"methods": ["email", "slack", "rabbitmq", "webhook", "apprise"],
                            "params": {
        "email": {"recipient": "someone@example.org"}, "slack": {"channel": "#jobs"},
        "webhook": {"url": httpserver.url_for("/hook")}, "apprise": {"targets": ["lab"]}}}
    resp = client.post("/submit", json={"task": task})
    assert resp.status_code == 502 and "Authentication to slurmrestd failed" in resp.get_json()["message"]
    bodies.append(resp.get_data(as_text=True))
    bodies.append(client.get(f"/monitor/task_uuid/{task['uuid']}").get_data(as_text=True))
    bodies.append(client.get("/slurm/ping").get_data(as_text=True))
    bodies.append(client.get("/monitor/task_uuid/x", headers={
        "Authorization": "Bearer " + plain["admin"][:-3] + "xyz"}).get_data(as_text=True))

    # a finished task whose notifications all fail, sent by a real poller
    finished = hello_task()
    finished["notification"] = task["notification"]
    from app.tasks import new_record
    store.insert(new_record(finished, state="COMPLETED", source="submit", job_id=1))
    store.update_state(finished["uuid"], state="COMPLETED", deliveries=[
        {"id": f"d{i}", "method": m, "target": t, "state": "COMPLETED", "status": "pending",
         "attempts": 0, "next_at": store.get(finished["uuid"])["created_at"],
         "created_at": store.get(finished["uuid"])["created_at"], "last_error": None, "sent_at": None}
        for i, (m, t) in enumerate([("email", "someone@example.org"), ("slack", "#jobs"),
                                    ("rabbitmq", "default"),
                                    ("webhook", httpserver.url_for("/hook")),
                                    ("apprise", "lab")])])
    poller = build_poller(load_config({}, config), store=store,
                          slurm=app.extensions["slurm_proxy"].slurm)
    poller.dispatcher.run_once()
    record = store.get(finished["uuid"])
    assert {d["status"] for d in record["deliveries"]} == {"failed"}

    # the HS256 key mode, failing the same way
    key_app = create_app({**config, "SLURM_USER_TOKEN": "",
                          "SLURM_JWT_HS256_KEY_BASE64": base64.b64encode(HS256_KEY).decode()},
                         store=MemoryTaskStore(), keys=keys, environ={})
    bodies.append(authorized(key_app, plain["admin"]).post(
        "/submit", json={"task": hello_task()}).get_data(as_text=True))

    captured = capsys.readouterr()
    haystack = "\n".join([caplog.text, captured.out, captured.err, *bodies,
                          json.dumps(store.get(task["uuid"]), default=str),
                          json.dumps(record, default=str)])
    assert "last_error" in json.dumps(record, default=str)           # errors were recorded
    for secret in [*SECRETS.values(), RABBIT_PASSWORD, APPRISE_PASSWORD, HS256_KEY.decode(),
                   base64.b64encode(HS256_KEY).decode(), plain["admin"]]:
        assert secret not in haystack, f"{secret} leaked"
    # the minted and the configured tokens never appear either
    assert "eyJ" not in haystack
