"""``slack``: slack_sdk's ``chat.postMessage`` with a bot token, to the task's channel
or the default one; or, without a token, the operator's incoming-webhook URL."""
from __future__ import annotations

from marshmallow import Schema

from ..errors import NotificationError
from ..schemas.fields import Text
from . import message
from .base import Notifier, PermanentNotificationError


class SlackParams(Schema):
    channel = Text(max_length=200)
    msg = Text(max_length=20_000, multiline=True)

PERMANENT_SLACK_ERRORS = {"channel_not_found", "not_in_channel", "is_archived",
                          "invalid_auth", "account_inactive", "token_revoked",
                          "msg_too_long", "no_text", "restricted_action"}


class SlackNotifier(Notifier):
    name = "slack"
    Params = SlackParams
    registry_defaults = {"msg": "The {task} task has finished."}

    @classmethod
    def targets(cls, params):
        return [params.get("channel") or "default"]

    @classmethod
    def check(cls, params, config):
        allowed = config["NOTIFICATIONS_SLACK_ALLOWED_CHANNELS"]
        channel = params.get("channel")
        if allowed and channel and channel.lower() not in allowed:
            return {"channel": ["Channel not allowed here."]}
        return {}

    def __init__(self, token: str, webhook_url: str, default_channel: str, api_url: str,
                 allowed_channels: frozenset[str], timeout: float):
        self._token, self._webhook_url = token, webhook_url
        self.default_channel, self.api_url = default_channel, api_url
        self.allowed_channels, self.timeout = allowed_channels, timeout

    @classmethod
    def from_config(cls, config):
        if not (config.get("NOTIFICATIONS_SLACK_TOKEN") or config.get("NOTIFICATIONS_SLACK_WEBHOOK_URL")):
            return None
        import slack_sdk  # noqa: F401 - fail at start-up if missing
        return cls(config["NOTIFICATIONS_SLACK_TOKEN"], config["NOTIFICATIONS_SLACK_WEBHOOK_URL"],
                   config["NOTIFICATIONS_SLACK_DEFAULT_CHANNEL"], config["NOTIFICATIONS_SLACK_API_URL"],
                   config["NOTIFICATIONS_SLACK_ALLOWED_CHANNELS"],
                   config["NOTIFICATIONS_TIMEOUT"])

    def send(self, event, params, target, delivery_id):
        text = message.text(event)
        if self._token:
            self._post(target, text, delivery_id)
        else:
            self._webhook(text)

    def _post(self, target, text, delivery_id):
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError, SlackRequestError

        channel = self.default_channel if target == "default" else target
        if not channel:
            raise PermanentNotificationError("no Slack channel: the task names none and "
                                             "NOTIFICATIONS_SLACK_DEFAULT_CHANNEL is empty")
        if self.allowed_channels and channel.lower() not in self.allowed_channels:
            raise PermanentNotificationError(f"Slack channel {channel} is not in "
                                             f"NOTIFICATIONS_SLACK_ALLOWED_CHANNELS")
        client = WebClient(token=self._token, base_url=self.api_url, timeout=int(self.timeout))
        try:
            client.chat_postMessage(channel=channel, text=text, metadata={
                "event_type": "slurm_proxy_task_state",
                "event_payload": {"delivery_id": delivery_id}})
        except SlackApiError as exc:
            code = exc.response.get("error") if exc.response is not None else None
            error = PermanentNotificationError if code in PERMANENT_SLACK_ERRORS else NotificationError
            raise error(f"Slack API error: {code or exc.response.status_code}") from None
        except (SlackRequestError, OSError) as exc:
            raise NotificationError(f"Slack not reachable: {exc.__class__.__name__}") from None

    def _webhook(self, text):
        from slack_sdk.webhook import WebhookClient

        try:
            resp = WebhookClient(self._webhook_url, timeout=int(self.timeout)).send(text=text)
        except OSError as exc:
            raise NotificationError(f"Slack webhook not reachable: {exc.__class__.__name__}") from None
        if resp.status_code != 200:
            error = (PermanentNotificationError if 400 <= resp.status_code < 500
                     and resp.status_code != 429 else NotificationError)
            raise error(f"Slack webhook answered HTTP {resp.status_code}")
