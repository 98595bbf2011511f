"""The notifier registry: a plugin declares everything about its method, and the
request schema, the accepted methods, the targets and the policy checks follow."""
from __future__ import annotations

import pytest
from marshmallow import Schema, fields

from app.errors import ConfigError
from app.notify import NOTIFIERS, PLUGINS, index, missing_params, targets
from app.notify.base import Notifier
from tests.unit.test_security import confined_app, task_with


class Pager(Notifier):
    name = "pager"

    class Params(Schema):
        number = fields.String()

    required = ("number",)

    @classmethod
    def from_config(cls, config):
        return None

    def send(self, event, params, target, delivery_id):
        pass


def test_a_plugin_that_cannot_say_who_it_delivers_to_stops_the_start():
    with pytest.raises(ConfigError, match="Pager lacks targets"):
        index([Pager])


def test_a_complete_plugin_is_indexed_and_clashing_names_are_refused():
    class CompletePager(Pager):
        aliases = ("beeper",)

        @classmethod
        def targets(cls, params):
            return [params["number"]]

    assert index([CompletePager]) == {"pager": CompletePager, "beeper": CompletePager}
    with pytest.raises(ConfigError, match="'pager' is taken"):
        index([CompletePager, CompletePager])

    class Careless(CompletePager):
        name = "careless"
        aliases = ()
        required = ("pin",)
    with pytest.raises(ConfigError, match="required 'pin'"):
        index([Careless])


def test_every_shipped_method_has_targets_and_the_registry_knows_aliases():
    assert set(PLUGINS) == {cls.name for cls in NOTIFIERS} | {"rabbithq"}
    assert PLUGINS["rabbithq"] is PLUGINS["rabbitmq"]
    assert targets("email", {"recipient": ["a@x.org", "b@x.org"]}) == ["a@x.org", "b@x.org"]
    assert targets("apprise", {"targets": ["lab", "lab", "alerts"]}) == ["lab", "alerts"]
    # A record naming a method no plugin knows any more still gets a delivery, which
    # the dispatcher then fails with a reason: never a silent no-send.
    assert targets("fax", {}) == ["default"]
    assert missing_params({"methods": ["webhook", "apprise"], "params": {"webhook": {}}}) == {
        "task.notification.params.webhook.url": ["Missing data for required field."],
        "task.notification.params.apprise.targets": ["Missing data for required field."]}


def test_apprise_through_the_api(store, fake_slurm, keys):
    client = confined_app(store, fake_slurm, keys, NOTIFICATIONS_APPRISE_TARGETS={
        "lab-teams": "msteams://a/b/c", "alerts": "ntfys://ntfy.example.org/hpc"})

    def submit(params):
        return client.post("/submit", json=task_with(notification={
            "methods": ["apprise"], "params": {"apprise": params}}))

    resp = submit({"targets": ["lab-teams", "pager-duty"]})
    assert resp.status_code == 400
    [message] = resp.get_json()["errors"]["task.notification.params.apprise.targets"]
    assert "'pager-duty'" in message and "alerts, lab-teams" in message
    assert "msteams" not in resp.get_data(as_text=True)
    resp = submit({})
    assert resp.status_code == 400
    assert "task.notification.params.apprise.targets" in resp.get_json()["errors"]
    assert submit({"targets": ["bad name!"]}).status_code == 400
    assert fake_slurm.submitted == []
    resp = submit({"targets": ["lab-teams"], "title": "run done"})
    assert resp.status_code == 200, resp.get_json()
    record = client.get(f"/monitor/task_uuid/{resp.get_json()['uuid']}").get_json()["monitor"]
    assert record["task"]["notification"]["params"]["apprise"]["targets"] == ["lab-teams"]


def test_the_openapi_document_describes_each_plugins_params(client):
    spec = client.get("/openapi.json").get_json()
    params = spec["components"]["schemas"]["NotificationParams"]["properties"]
    assert {"email", "gmail", "slack", "rabbitmq", "rabbithq", "webhook", "apprise"} <= set(params)


def test_the_apprise_setting_must_be_a_json_object_of_names_to_urls():
    from app.config import load_config
    with pytest.raises(ConfigError) as info:
        load_config({"NOTIFICATIONS_APPRISE_TARGETS": '{"x": "not a url with secret-123"}'})
    assert "NOTIFICATIONS_APPRISE_TARGETS" in str(info.value) and "secret-123" not in str(info.value)
    config = load_config({"NOTIFICATIONS_APPRISE_TARGETS": '{"lab": "json://h/p"}'})
    assert config["NOTIFICATIONS_APPRISE_TARGETS"] == {"lab": "json://h/p"}
