"""``webhook``: a signed JSON POST.

Headers: ``X-Slurm-Proxy-Delivery`` (the idempotency key), ``X-Slurm-Proxy-Event``
(the state) and ``X-Slurm-Proxy-Signature: t=<unix time>,v1=<hex>``, where ``v1`` is
HMAC-SHA256 with NOTIFICATIONS_WEBHOOK_SECRET over ``"<t>.<body>"``. A receiver
recomputes it over the raw body, compares in constant time (``verify`` below), rejects
a ``t`` older than a few minutes (replays), and drops a delivery id it has seen.
URLs must be https unless NOTIFICATIONS_WEBHOOK_ALLOW_HTTP is set.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import requests

from ..errors import NotificationError
from ..schemas.notification import WebhookParams
from .base import Notifier, PermanentNotificationError

SIGNATURE_HEADER = "X-Slurm-Proxy-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300,
           now: float | None = None) -> bool:
    """What a receiver does: check the signature and that it is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookNotifier(Notifier):
    name = "webhook"
    Params = WebhookParams

    def __init__(self, secret: str, allow_http: bool, timeout: float):
        self._secret, self.allow_http, self.timeout = secret, allow_http, timeout
        self._session = requests.Session()
        self._session.trust_env = False

    @classmethod
    def from_config(cls, config):
        if not config.get("NOTIFICATIONS_WEBHOOK_SECRET"):
            return None
        return cls(config["NOTIFICATIONS_WEBHOOK_SECRET"],
                   config["NOTIFICATIONS_WEBHOOK_ALLOW_HTTP"], config["NOTIFICATIONS_TIMEOUT"])

    def send(self, event, params, target, delivery_id):
        if not (target.startswith("https://") or (self.allow_http and target.startswith("http://"))):
            raise PermanentNotificationError("webhook URLs must be https")
        body = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "slurm-proxy",
                   "X-Slurm-Proxy-Delivery": delivery_id, "X-Slurm-Proxy-Event": event["state"],
                   SIGNATURE_HEADER: sign(self._secret, int(time.time()), body)}
        try:
            resp = self._session.post(target, data=body, headers=headers,
                                      timeout=(3.05, self.timeout), allow_redirects=False)
        except requests.RequestException as exc:
            raise NotificationError(f"webhook {self.redact(target)} not reachable: "
                                    f"{exc.__class__.__name__}") from None
        if 200 <= resp.status_code < 300:
            return
        error = (PermanentNotificationError if 400 <= resp.status_code < 500
                 and resp.status_code not in (408, 429) else NotificationError)
        raise error(f"webhook {self.redact(target)} answered HTTP {resp.status_code}")
