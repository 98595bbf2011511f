"""Each notification method against a real peer: aiosmtpd, RabbitMQ, HTTP servers
standing in for Slack and webhook receivers, and googleapiclient's HTTP mock."""
from __future__ import annotations

import base64
import email
import json
from email import policy

import pytest
from werkzeug import Response

from app.errors import NotificationError
from app.notify import PermanentNotificationError, build_notifiers
from app.notify.gmail import GmailNotifier
from app.notify.webhook import SIGNATURE_HEADER, verify
from tests.integration.peers import drain, notify_config

EVENT = {
    "event": "task.state", "delivery_id": "d1e2", "state": "FAILED",
    "task": {"uuid": "123e4567-e89b-12d3-a456-426614174000", "name": "generic",
             "username": "someone"},
    "slurm_job_id": 42, "exit_code": 3, "signal": None, "state_reason": "NonZeroExitCode",
    "submitted_at": "2026-11-23T15:00:00Z", "started_at": "2026-11-23T15:00:01Z",
    "ended_at": "2026-11-23T15:01:06Z", "elapsed": 65,
    "stdout": "/home/someone/out/o.txt", "stderr": "/home/someone/err/e.txt",
    "occurred_at": "2026-11-23T15:01:07Z", "message": "my own words",
}
FACTS = ["123e4567-e89b-12d3-a456-426614174000", "42", "FAILED (NonZeroExitCode)",
         "Exit code: 3", "0:01:05", "/home/someone/out/o.txt", "/home/someone/err/e.txt",
         "2026-11-23T15:00:01Z", "2026-11-23T15:01:06Z", "my own words", "d1e2"]


def test_email_carries_the_facts_and_the_users_words(smtp):
    email_ = build_notifiers(notify_config(smtp_port=smtp.port))["email"]
    email_.send(EVENT, {"subject": "my subject", "body": "my own words",
                        "sender": "me@users.example.org"}, "someone@example.org", "d1e2")
    (msg,) = smtp.inbox.messages
    assert msg["Subject"] == "my subject"
    assert msg["From"] == "slurm-proxy@cluster.example.org"       # never the task's sender
    assert msg["Reply-To"] == "me@users.example.org"
    assert msg["To"] == "someone@example.org"
    assert msg["Message-ID"] == "<d1e2@cluster.example.org>"
    body = msg.get_content()
    for fact in FACTS:
        assert fact in body, fact
    assert smtp.inbox.envelopes[0].mail_from == "slurm-proxy@cluster.example.org"


def test_email_default_subject_names_task_state_and_job(smtp):
    build_notifiers(notify_config(smtp_port=smtp.port))["email"].send(
        EVENT, {}, "someone@example.org", "d1")
    assert smtp.inbox.messages[0]["Subject"] == "[slurm-proxy] generic FAILED (job 42)"


def test_email_outside_allowed_domains_is_refused_without_sending(smtp):
    notifier = build_notifiers(notify_config(
        smtp_port=smtp.port, NOTIFICATIONS_SMTP_ALLOWED_DOMAINS="example.org"))["email"]
    with pytest.raises(PermanentNotificationError, match="not in NOTIFICATIONS_SMTP_ALLOWED"):
        notifier.send(EVENT, {}, "victim@elsewhere.net", "d1")
    assert smtp.inbox.messages == []


def test_smtp_down_is_a_retryable_error(smtp):
    notifier = build_notifiers(notify_config(smtp_port=smtp.port))["email"]
    smtp.stop()
    with pytest.raises(NotificationError) as info:
        notifier.send(EVENT, {}, "someone@example.org", "d1")
    assert not isinstance(info.value, PermanentNotificationError)


def test_rabbitmq_message_is_persistent_json_with_the_delivery_id(rabbitmq):
    notifier = build_notifiers(notify_config(rabbit=rabbitmq))["rabbitmq"]
    notifier.send(EVENT, {"msg": "my own words"}, "default", "d1e2")
    ((props, body),) = drain(rabbitmq["queue"])
    assert props.delivery_mode == 2 and props.message_id == "d1e2"
    assert props.content_type == "application/json"
    assert json.loads(body) == EVENT


def test_rabbitmq_unroutable_key_is_an_error_not_a_silent_drop(rabbitmq):
    notifier = build_notifiers(notify_config(
        rabbit=rabbitmq, NOTIFICATIONS_RABBITMQ_BINDING_KEY="only.this"))["rabbitmq"]
    with pytest.raises(PermanentNotificationError, match="no queue is bound"):
        notifier.send(EVENT, {}, "something.else", "d1")


def test_slack_posts_to_the_tasks_channel(httpserver):
    httpserver.expect_oneshot_request("/api/chat.postMessage", method="POST").respond_with_json(
        {"ok": True, "channel": "C1", "ts": "1.0"})
    notifier = build_notifiers(notify_config(slack_url=httpserver.url_for("/api/")))["slack"]
    notifier.send(EVENT, {"channel": "#jobs", "msg": "my own words"}, "#jobs", "d1e2")
    (request, _), = httpserver.log
    assert request.headers["Authorization"] == "Bearer xoxb-test-token"
    sent = request.get_json() if request.is_json else request.form
    assert sent["channel"] == "#jobs"
    for fact in FACTS:
        assert fact in sent["text"], fact


def test_slack_channel_not_found_is_permanent_and_ratelimit_is_not(httpserver):
    notifier = build_notifiers(notify_config(slack_url=httpserver.url_for("/api/")))["slack"]
    httpserver.expect_oneshot_request("/api/chat.postMessage").respond_with_json(
        {"ok": False, "error": "channel_not_found"})
    with pytest.raises(PermanentNotificationError, match="channel_not_found"):
        notifier.send(EVENT, {}, "default", "d1")
    httpserver.expect_oneshot_request("/api/chat.postMessage").respond_with_json(
        {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"})
    with pytest.raises(NotificationError) as info:
        notifier.send(EVENT, {}, "default", "d1")
    assert not isinstance(info.value, PermanentNotificationError)


def test_slack_incoming_webhook_without_token(httpserver):
    httpserver.expect_oneshot_request("/services/T/B/X", method="POST").respond_with_data("ok")
    notifier = build_notifiers(notify_config(
        NOTIFICATIONS_SLACK_WEBHOOK_URL=httpserver.url_for("/services/T/B/X")))["slack"]
    notifier.send(EVENT, {}, "default", "d1")
    (request, _), = httpserver.log
    assert "Exit code: 3" in request.get_json()["text"]


def test_webhook_is_signed_and_the_receiver_can_verify_it(httpserver):
    secret = "webhook-secret-do-not-log"
    received = []

    def receiver(request):
        ok = verify(secret, request.headers[SIGNATURE_HEADER], request.get_data())
        received.append((ok, request.headers["X-Slurm-Proxy-Delivery"], request.get_json()))
        return Response("", status=204 if ok else 401)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
    notifier = build_notifiers(notify_config(webhook_secret=secret))["webhook"]
    notifier.send(EVENT, {}, httpserver.url_for("/hook"), "d1e2")
    ((ok, delivery, body),) = received
    assert ok and delivery == "d1e2" and body == EVENT
    # A tampered body or another secret does not verify; an old timestamp is a replay.
    (request, _), = httpserver.log
    header, raw = request.headers[SIGNATURE_HEADER], request.get_data()
    assert not verify(secret, header, raw.replace(b"FAILED", b"COMPLETED"))
    assert not verify("other-secret", header, raw)
    assert not verify(secret, header, raw, now=int(header.split(",")[0][2:]) + 301)


def test_webhook_refusals(httpserver):
    notifier = build_notifiers(notify_config(webhook_secret="s"))["webhook"]
    httpserver.expect_oneshot_request("/gone").respond_with_data("", status=410)
    with pytest.raises(PermanentNotificationError, match="410"):
        notifier.send(EVENT, {}, httpserver.url_for("/gone"), "d1")
    httpserver.expect_oneshot_request("/busy").respond_with_data("", status=503)
    with pytest.raises(NotificationError) as info:
        notifier.send(EVENT, {}, httpserver.url_for("/busy"), "d1")
    assert not isinstance(info.value, PermanentNotificationError)
    strict = build_notifiers(notify_config(webhook_secret="s",
                                           NOTIFICATIONS_WEBHOOK_ALLOW_HTTP=False))["webhook"]
    with pytest.raises(PermanentNotificationError, match="https"):
        strict.send(EVENT, {}, httpserver.url_for("/hook"), "d1")


def test_gmail_sends_the_same_message_through_the_api():
    from googleapiclient.http import HttpMockSequence

    http = HttpMockSequence([({"status": "200"}, "echo_request_body")])
    notifier = GmailNotifier("unused.json", "sender@gmail.example", frozenset(), 5, http=http)
    answer = notifier.send(EVENT, {"subject": "s", "body": "my own words"},
                           "someone@example.org", "d1e2")
    msg = email.message_from_bytes(base64.urlsafe_b64decode(answer["raw"]), policy=policy.default)
    assert msg["To"] == "someone@example.org" and msg["From"] == "sender@gmail.example"
    assert msg["Message-ID"] == "<d1e2@gmail.example>"
    for fact in FACTS:
        assert fact in msg.get_content(), fact


@pytest.mark.parametrize("status,permanent", [("400", True), ("429", False), ("503", False)])
def test_gmail_errors(status, permanent):
    from googleapiclient.http import HttpMockSequence

    http = HttpMockSequence([({"status": status}, '{"error": {"message": "no"}}')])
    notifier = GmailNotifier("unused.json", "sender@gmail.example", frozenset(), 5, http=http)
    with pytest.raises(NotificationError) as info:
        notifier.send(EVENT, {}, "someone@example.org", "d1")
    assert isinstance(info.value, PermanentNotificationError) is permanent
