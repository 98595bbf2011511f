"""``apprise``: the Apprise library's ~100 services (Teams, Mattermost, Discord,
Matrix, ntfy, Telegram, ...), to targets the operator names.

The operator lists targets in ``NOTIFICATIONS_APPRISE_TARGETS`` as JSON, name to
Apprise URL (``{"lab-teams": "msteams://...", "alerts": "ntfy://..."}``); the URLs
carry the services' secrets and stay in configuration. A task picks targets by name
(``params.apprise.targets``), so records, logs and responses only ever hold names.
Each delivery sends to one target with the service's own timeouts set to
``NOTIFICATIONS_TIMEOUT``; for Apprise's generic ``json://``, ``form://`` and
``xml://`` the ``X-Slurm-Proxy-Delivery`` header carries the idempotency key.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from marshmallow import Schema, fields, validate

from ..errors import NotificationError
from ..schemas.fields import SLURM_NAME, Text
from . import message
from .base import Notifier, PermanentNotificationError

# Apprise logs the URLs it sends to at DEBUG; they hold secrets, so it may only warn.
logging.getLogger("apprise").setLevel(logging.WARNING)


class AppriseParams(Schema):
    targets = fields.List(Text(max_length=64, validate=validate.Regexp(SLURM_NAME)),
                          validate=validate.Length(min=1, max=10),
                          metadata={"description": "Names from the server's "
                                                   "NOTIFICATIONS_APPRISE_TARGETS."})
    title = Text(max_length=300)
    msg = Text(max_length=20_000, multiline=True)


class AppriseNotifier(Notifier):
    name = "apprise"
    Params = AppriseParams
    required = ("targets",)
    registry_defaults = {"msg": "The {task} task has finished."}

    def __init__(self, urls: Mapping[str, str], timeout: float):
        self._urls = dict(urls)
        self.timeout = timeout

    def __repr__(self) -> str:   # never print the URLs
        return f"AppriseNotifier(targets={sorted(self._urls)})"

    @classmethod
    def targets(cls, params):
        return list(dict.fromkeys(params.get("targets") or []))

    @classmethod
    def check(cls, params, config):
        known = config.get("NOTIFICATIONS_APPRISE_TARGETS") or {}
        unknown = [t for t in params.get("targets") or [] if t not in known]
        if unknown:
            have = ", ".join(sorted(known)) or "none"
            return {"targets": [f"Unknown target {', '.join(map(repr, unknown))}; "
                                f"this server has: {have}."]}
        return {}

    @classmethod
    def from_config(cls, config):
        urls = config.get("NOTIFICATIONS_APPRISE_TARGETS") or {}
        if not urls:
            return None
        import apprise  # noqa: F401 - fail at start-up if missing
        return cls(urls, config["NOTIFICATIONS_TIMEOUT"])

    def send(self, event: dict[str, Any], params: Mapping[str, Any], target: str,
             delivery_id: str) -> None:
        import apprise

        url = self._urls.get(target)
        if url is None:
            raise PermanentNotificationError(
                f"apprise target {target!r} is no longer in NOTIFICATIONS_APPRISE_TARGETS")
        service = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if service is None:
            raise PermanentNotificationError(
                f"apprise target {target!r} has a URL Apprise does not understand")
        service.socket_connect_timeout = min(self.timeout, 3.05)
        service.socket_read_timeout = self.timeout
        if isinstance(getattr(service, "headers", None), dict):
            service.headers["X-Slurm-Proxy-Delivery"] = delivery_id
        try:
            ok = service.notify(body=message.text(event),
                                title=params.get("title") or message.subject(event, params))
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must not reach the loop
            raise NotificationError(f"apprise target {target!r} failed: "
                                    f"{exc.__class__.__name__}") from None
        if not ok:
            raise NotificationError(f"apprise could not deliver to target {target!r} "
                                    f"(the service refused it or was not reachable)")
