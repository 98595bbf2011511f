"""``task.notification``: which methods to use, and each method's own settings.

Each method's ``params`` are checked by that method's schema. Secrets (SMTP password,
Slack token, AMQP URL, webhook secret) are server configuration and never come from a
request.
"""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from ..constants import NOTIFICATION_METHOD_ALIASES, NOTIFICATION_METHODS
from .fields import Text

TERMINAL_AND_REPORTABLE_STATES = (
    "PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
    "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "LOST",
    "SUBMIT_FAILED",
)


class Recipients(fields.Field):
    """One address or a list of them (at most 20)."""

    _email = fields.Email()

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
    url = fields.Url(schemes={"https", "http"})
    msg = Text(max_length=20_000, multiline=True)


PARAMS_SCHEMAS: dict[str, type[Schema]] = {
    "email": EmailParams,
    "gmail": EmailParams,
    "slack": SlackParams,
    "rabbitmq": RabbitMQParams,
    "webhook": WebhookParams,
}
assert set(PARAMS_SCHEMAS) == set(NOTIFICATION_METHODS)

# One instance per method: schemas are reusable, and building one costs more than a load.
PARAMS_LOADERS: dict[str, Schema] = {name: cls() for name, cls in PARAMS_SCHEMAS.items()}

METHOD_CHOICES = tuple(NOTIFICATION_METHODS) + tuple(NOTIFICATION_METHOD_ALIASES)


def canonical_method(name: str) -> str:
    return NOTIFICATION_METHOD_ALIASES.get(name, name)


class NotificationSchema(Schema):
    methods = fields.List(
        fields.String(validate=validate.OneOf(
            METHOD_CHOICES, error="Unknown method {input!r}; use one of: {choices}.")),
        validate=validate.Length(max=len(NOTIFICATION_METHODS)))
    params = fields.Dict(keys=fields.String(), values=fields.Dict())
    on = fields.List(fields.String(validate=validate.OneOf(TERMINAL_AND_REPORTABLE_STATES)),
                     validate=validate.Length(max=len(TERMINAL_AND_REPORTABLE_STATES)))

    @pre_load
    def _aliases(self, data, **kwargs):
        """``rabbithq`` (the reference README's spelling) means ``rabbitmq``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("methods"), list):
            seen: list = []
            for m in data["methods"]:
                m = canonical_method(m) if isinstance(m, str) else m
                if m not in seen:
                    seen.append(m)
            data["methods"] = seen
        if isinstance(data.get("params"), dict):
            data["params"] = {canonical_method(k) if isinstance(k, str) else k: v
                              for k, v in data["params"].items()}
        return data

    @validates_schema
    def _check_params(self, data, **kwargs):
        errors: dict = {}
        for method, params in (data.get("params") or {}).items():
            loader = PARAMS_LOADERS.get(method)
            if loader is None:
                errors[method] = [f"Unknown method {method!r}; use one of: "
                                  f"{', '.join(METHOD_CHOICES)}."]
                continue
            try:
                data["params"][method] = loader.load(params)
            except ValidationError as exc:
                errors[method] = exc.messages
        if errors:
            raise ValidationError({"params": errors})
