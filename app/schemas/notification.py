"""``task.notification``: which methods to use, and each method's own settings.

Everything method-specific comes from the notifier plugins (``app/notify``): the
method names and aliases, and each method's ``params`` schema. Secrets (SMTP
password, Slack token, AMQP URL, webhook secret, Apprise URLs) are server
configuration and never come from a request.
"""
from __future__ import annotations

from marshmallow import Schema, fields, post_load, validate

from ..notify import ALIASES, NOTIFIERS, canonical_method
from ..states import REPORTABLE_STATES


METHOD_CHOICES = tuple(cls.name for cls in NOTIFIERS) + tuple(ALIASES)

# Each method's own settings, under its name and its aliases (``rabbithq``).
ParamsSchema = Schema.from_dict(
    {key: fields.Nested(cls.Params) for cls in NOTIFIERS for key in (cls.name, *cls.aliases)},
    name="NotificationParams")


class NotificationSchema(Schema):
    methods = fields.List(
        fields.String(validate=validate.OneOf(
            METHOD_CHOICES, error="Unknown method {input!r}; use one of: {choices}.")),
        validate=validate.Length(max=len(METHOD_CHOICES)))
    params = fields.Nested(ParamsSchema)
    on = fields.List(fields.String(validate=validate.OneOf(REPORTABLE_STATES)),
                     validate=validate.Length(max=len(REPORTABLE_STATES)))

    @post_load
    def _aliases(self, data, **kwargs):
        """An alias (``rabbithq``, the reference README's spelling) means its method."""
        methods: list = []
        for method in data.get("methods", []):
            method = canonical_method(method)
            if method not in methods:
                methods.append(method)
        if "methods" in data:
            data["methods"] = methods
        for alias, method in ALIASES.items():
            params = data.get("params")
            if params and alias in params:
                params.setdefault(method, params.pop(alias))
        return data
