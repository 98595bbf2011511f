"""The apprise method against a real peer: Apprise's generic ``json://`` and
``form://`` services posting to a local HTTP server (pytest-httpserver), as they
would to any of the ~100 services Apprise speaks to. The operator's URL, with its
credentials, must never leave the configuration."""
from __future__ import annotations

import json
import logging

import pytest

from app.errors import NotificationError
from app.notify import PermanentNotificationError, build_notifiers
from app.notify.dispatcher import Dispatcher
from app.memory_store import MemoryTaskStore
from app.tasks import new_record
from app.tracking import change_state
from tests.conftest import hello_task
from tests.integration.peers import notify_config
from tests.integration.test_notifiers_live import EVENT, FACTS

SECRET = "s3cr3t-apprise-password"


def _config(httpserver, **targets):
    port = httpserver.port
    urls = {name: url.format(port=port, secret=SECRET) for name, url in targets.items()}
    return notify_config(NOTIFICATIONS_APPRISE_TARGETS=urls)


def test_json_target_gets_the_facts_the_title_and_the_delivery_id(httpserver, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_oneshot_request("/hooks/lab", method="POST").respond_with_data("ok")
    notifier = build_notifiers(_config(
        httpserver, lab="json://bot:{secret}@127.0.0.1:{port}/hooks/lab"))["apprise"]
    notifier.send(EVENT, {"title": "my run ended"}, "lab", "d1e2")
    (request, _), = httpserver.log
    body = json.loads(request.data)
    assert body["title"] == "my run ended"
    for fact in FACTS:
        assert fact in body["message"]
    assert request.headers["X-Slurm-Proxy-Delivery"] == "d1e2"
    assert request.authorization.password == SECRET        # the URL's own credentials
    assert SECRET not in caplog.text and SECRET not in repr(notifier)


def test_form_target_and_the_default_title(httpserver):
    httpserver.expect_oneshot_request("/form", method="POST").respond_with_data("ok")
    notifier = build_notifiers(_config(httpserver, alerts="form://127.0.0.1:{port}/form"))["apprise"]
    notifier.send(EVENT, {}, "alerts", "d9")
    (request, _), = httpserver.log
    assert "FAILED" in request.form["title"] and "42" in request.form["title"]
    assert "Exit code: 3" in request.form["message"]


def test_a_refusing_or_absent_peer_is_retryable_and_names_only_the_target(httpserver, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_oneshot_request("/busy").respond_with_data("", status=503)
    notifier = build_notifiers(_config(
        httpserver, busy="json://u:{secret}@127.0.0.1:{port}/busy",
        gone="json://u:{secret}@127.0.0.1:1/nothing-listens"))["apprise"]
    for target in ("busy", "gone"):
        with pytest.raises(NotificationError) as info:
            notifier.send(EVENT, {}, target, "d1")
        assert not isinstance(info.value, PermanentNotificationError)
        assert repr(target) in info.value.message and SECRET not in info.value.message
    assert SECRET not in caplog.text


def test_a_target_removed_from_the_configuration_is_permanent(httpserver):
    notifier = build_notifiers(_config(httpserver, lab="json://127.0.0.1:{port}/x"))["apprise"]
    with pytest.raises(PermanentNotificationError, match="no longer in NOTIFICATIONS_APPRISE_TARGETS"):
        notifier.send(EVENT, {}, "old-name", "d1")


def test_a_task_naming_two_targets_gets_one_delivery_each_with_names_in_the_record(httpserver):
    """Through the outbox and the dispatcher: the record keeps target names and
    outcomes, never the URLs."""
    for path in ("/a", "/b"):
        httpserver.expect_oneshot_request(path, method="POST").respond_with_data("ok")
    config = _config(httpserver, a="json://u:{secret}@127.0.0.1:{port}/a",
                     b="json://u:{secret}@127.0.0.1:{port}/b")
    store = MemoryTaskStore()
    task = hello_task()
    task["notification"] = {"methods": ["apprise"], "on": ["COMPLETED"],
                            "params": {"apprise": {"targets": ["a", "b"], "msg": "done!"}}}
    record = new_record(task, state="RUNNING", source="submit", job_id=77)
    store.insert(record)
    assert change_state(store, store.get(task["uuid"]), "COMPLETED")
    dispatcher = Dispatcher.from_config(store, build_notifiers(config), config)
    assert dispatcher.run_once()["sent"] == 2
    saved = store.get(task["uuid"])
    assert sorted(d["target"] for d in saved["deliveries"]) == ["a", "b"]
    assert {d["status"] for d in saved["deliveries"]} == {"sent"}
    assert SECRET not in repr(saved) and "127.0.0.1" not in repr(saved["deliveries"])
    assert all("done!" in json.loads(req.data)["message"] for req, _ in httpserver.log)
