"""``task.notification``: which methods to use, and each method's own settings.

Each method's ``params`` are checked by that method's schema. Secrets (SMTP password,
Slack token, AMQP URL, webhook secret) are server configuration and never come from a
request.
"""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, post_load, validate

from ..constants import NOTIFICATION_METHOD_ALIASES, NOTIFICATION_METHODS
from .fields import HttpUrl, Text

TERMINAL_AND_REPORTABLE_STATES = (
    "PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
    "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "LOST",
    "SUBMIT_FAILED",
)


class Recipients(fields.Field):
    """One address or a list of them (at most 20)."""

    _email = fields.Email()

    def __init__(self, *args, **kwargs):
        email = {"type": "string", "format": "email"}
        super().__init__(*args, metadata={"oneOf": [
            email, {"type": "array", "items": email, "minItems": 1, "maxItems": 20}]}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        items = value if isinstance(value, list) else [value]
        if not items or len(items) > 20:
            raise ValidationError("Give one to 20 addresses.")
        out = []
        for item in items:
            if not isinstance(item, str):
                raise ValidationError("Each address must be a string.")
            out.append(self._email.deserialize(item))
        return out if isinstance(value, list) else out[0]


class EmailParams(Schema):
    sender = fields.Email()          # becomes Reply-To; From is always the server's
    recipient = Recipients()
    subject = Text(max_length=300)
    body = Text(max_length=20_000, multiline=True)


class SlackParams(Schema):
    channel = Text(max_length=200)
    msg = Text(max_length=20_000, multiline=True)


class RabbitMQParams(Schema):
    routing_key = Text(max_length=255)
    msg = Text(max_length=20_000, multiline=True)


class WebhookParams(Schema):
    url = HttpUrl()
    msg = Text(max_length=20_000, multiline=True)


METHOD_CHOICES = tuple(NOTIFICATION_METHODS) + tuple(NOTIFICATION_METHOD_ALIASES)


def canonical_method(name: str) -> str:
    return NOTIFICATION_METHOD_ALIASES.get(name, name)


class ParamsSchema(Schema):
    """Each method's own settings; ``rabbithq`` is read as ``rabbitmq``."""

    email = fields.Nested(EmailParams)
    gmail = fields.Nested(EmailParams)
    slack = fields.Nested(SlackParams)
    rabbitmq = fields.Nested(RabbitMQParams)
    rabbithq = fields.Nested(RabbitMQParams)
    webhook = fields.Nested(WebhookParams)


class NotificationSchema(Schema):
    methods = fields.List(
        fields.String(validate=validate.OneOf(
            METHOD_CHOICES, error="Unknown method {input!r}; use one of: {choices}.")),
        validate=validate.Length(max=len(METHOD_CHOICES)))
    params = fields.Nested(ParamsSchema)
    on = fields.List(fields.String(validate=validate.OneOf(TERMINAL_AND_REPORTABLE_STATES)),
                     validate=validate.Length(max=len(TERMINAL_AND_REPORTABLE_STATES)))

    @post_load
    def _aliases(self, data, **kwargs):
        """``rabbithq`` (the reference README's spelling) means ``rabbitmq``."""
        methods: list = []
        for method in data.get("methods", []):
            method = canonical_method(method)
            if method not in methods:
                methods.append(method)
        if "methods" in data:
            data["methods"] = methods
        params = data.get("params")
        if params and "rabbithq" in params:
            alias = params.pop("rabbithq")
            params.setdefault("rabbitmq", alias)
        return data
