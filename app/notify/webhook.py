"""``webhook``: a signed JSON POST.

Headers: ``X-Slurm-Proxy-Delivery`` (the idempotency key), ``X-Slurm-Proxy-Event``
(the state) and ``X-Slurm-Proxy-Signature: t=<unix time>,v1=<hex>``, where ``v1`` is
HMAC-SHA256 with NOTIFICATIONS_WEBHOOK_SECRET over ``"<t>.<body>"``. A receiver
recomputes it over the raw body, compares in constant time (``verify`` below), rejects
a ``t`` older than a few minutes (replays), and drops a delivery id it has seen.
URLs must be https unless NOTIFICATIONS_WEBHOOK_ALLOW_HTTP is set, and must not reach
internal addresses unless NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS lists them (no SSRF).

The host is resolved once per send; every address it resolves to is checked, and the
connection goes to those checked addresses (pinned for that request), with TLS still
verified against the URL's hostname (SNI and certificate). There is no second
resolution for a DNS rebinding to slip into.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from urllib.parse import urlsplit

import requests
import urllib3

from marshmallow import Schema

from ..errors import NotificationError
from ..schemas.fields import HttpUrl, Text
from .base import Notifier, PermanentNotificationError


class WebhookParams(Schema):
    url = HttpUrl()
    msg = Text(max_length=20_000, multiline=True)

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


def check_destination(url: str, *, allow_http: bool, allowed_networks=(), resolve: bool,
                      resolver=socket.getaddrinfo) -> list:
    """Refuse URLs that are not https, or that point at loopback, link-local, private
    or other internal addresses (SSRF), unless an operator allowed those networks.

    At submit time (``resolve=False``) only what the URL itself says is checked; at
    send time the host is resolved (once, with ``resolver``) and every address it
    resolves to is checked. Raises ValueError saying why; returns the checked
    addresses, in the resolver's order (the ones a sender may connect to)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise ValueError("webhook URLs must be https")
    if not parts.hostname:
        raise ValueError("webhook URL has no host")
    if parts.username or parts.password:
        raise ValueError("webhook URL must not carry credentials")
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            addresses = [ipaddress.ip_address("127.0.0.1")]
        elif resolve:
            try:
                infos = resolver(host, parts.port or 443, proto=socket.IPPROTO_TCP)
            except OSError:
                raise ValueError(f"webhook host {host} does not resolve") from None
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        else:
            addresses = []
    for address in addresses:
        if any(address in network for network in allowed_networks):
            continue
        if not address.is_global or address.is_multicast:
            raise ValueError(f"webhook host {host} is an internal address ({address}); "
                             f"an operator may allow it in NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS")
    return list(dict.fromkeys(addresses))


class WebhookNotifier(Notifier):
    name = "webhook"
    Params = WebhookParams
    required = ("url",)
    registry_defaults = {"msg": "The {task} task has finished."}

    @classmethod
    def targets(cls, params):
        return [params["url"]] if params.get("url") else []

    @classmethod
    def check(cls, params, config):
        """What the URL itself says (scheme, literal internal addresses); its name is
        resolved and checked again when each delivery is sent."""
        if not params.get("url"):
            return {}
        try:
            check_destination(params["url"], allow_http=config["NOTIFICATIONS_WEBHOOK_ALLOW_HTTP"],
                              allowed_networks=config["NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS"],
                              resolve=False)
        except ValueError as exc:
            return {"url": [f"{str(exc).capitalize()}."]}
        return {}

    def __init__(self, secret: str, allow_http: bool, timeout: float, allowed_networks=(), *,
                 resolver=socket.getaddrinfo, ca_certs: str | None = None):
        self._secret, self.allow_http, self.timeout = secret, allow_http, timeout
        self.allowed_networks = tuple(allowed_networks)
        self.resolver = resolver
        self.ca_certs = ca_certs or requests.certs.where()

    @classmethod
    def from_config(cls, config):
        if not config.get("NOTIFICATIONS_WEBHOOK_SECRET"):
            return None
        return cls(config["NOTIFICATIONS_WEBHOOK_SECRET"],
                   config["NOTIFICATIONS_WEBHOOK_ALLOW_HTTP"], config["NOTIFICATIONS_TIMEOUT"],
                   config["NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS"])

    def send(self, event, params, target, delivery_id):
        try:
            addresses = check_destination(target, allow_http=self.allow_http,
                                          allowed_networks=self.allowed_networks, resolve=True,
                                          resolver=self.resolver)
        except ValueError as exc:
            raise PermanentNotificationError(str(exc)) from None
        body = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "slurm-proxy",
                   "X-Slurm-Proxy-Delivery": delivery_id, "X-Slurm-Proxy-Event": event["state"],
                   SIGNATURE_HEADER: sign(self._secret, int(time.time()), body)}
        status = None
        for address in addresses:
            try:
                status = self._post_to(address, target, body, headers)
                break
            except (urllib3.exceptions.NewConnectionError,
                    urllib3.exceptions.ConnectTimeoutError):
                continue                # the next checked address, if any
            except urllib3.exceptions.SSLError:
                raise NotificationError(f"webhook {self.redact(target)}: TLS verification "
                                        f"failed (certificate not valid for the host)") from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise NotificationError(f"webhook {self.redact(target)} not reachable: "
                                        f"{exc.__class__.__name__}") from None
        if status is None:
            raise NotificationError(f"webhook {self.redact(target)} not reachable: "
                                    f"no connection to any of its {len(addresses)} address(es)")
        if 200 <= status < 300:
            return
        error = (PermanentNotificationError if 400 <= status < 500
                 and status not in (408, 429) else NotificationError)
        raise error(f"webhook {self.redact(target)} answered HTTP {status}")

    def _post_to(self, address, url: str, body: bytes, headers: dict) -> int:
        """POST to ``address`` (checked), as ``url``'s host: the Host header, SNI and the
        certificate check all use the hostname. No redirects, no retries; the answer's
        body is not read."""
        parts = urlsplit(url)
        hostname = parts.hostname
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timeout = urllib3.Timeout(connect=3.05, read=self.timeout)
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                str(address), parts.port or 443, timeout=timeout, retries=False, maxsize=1,
                cert_reqs="CERT_REQUIRED", ca_certs=self.ca_certs, server_hostname=hostname,
                assert_hostname=hostname)
        else:
            pool = urllib3.HTTPConnectionPool(str(address), parts.port or 80, timeout=timeout,
                                              retries=False, maxsize=1)
        try:
            resp = pool.urlopen("POST", path, body=body,
                                headers={**headers, "Host": parts.netloc}, redirect=False,
                                assert_same_host=False, preload_content=False)
            status = resp.status
            resp.release_conn()
            return status
        finally:
            pool.close()
