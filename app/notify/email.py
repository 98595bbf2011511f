"""``email``: SMTP with STARTTLS or implicit TLS, and login.

The From address is always the server's (NOTIFICATIONS_SMTP_FROM); a task's ``sender``
only becomes Reply-To, so the service is never an open relay for forged senders.
Optional NOTIFICATIONS_SMTP_ALLOWED_DOMAINS limits recipients. The Message-ID is
derived from the delivery id, so a receiver can drop a repeat.
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Mapping

from marshmallow import Schema, fields

from ..errors import NotificationError
from ..schemas.fields import Recipients, Text
from . import message
from .base import Notifier, PermanentNotificationError


class EmailParams(Schema):
    sender = fields.Email()          # becomes Reply-To; From is always the server's
    recipient = Recipients()
    subject = Text(max_length=300)
    body = Text(max_length=20_000, multiline=True)


def recipients(params: Mapping[str, Any]) -> list[str]:
    recipient = params.get("recipient")
    return list(recipient) if isinstance(recipient, list) else [recipient] if recipient else []


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def build_email(event: dict[str, Any], params: Mapping[str, Any], to: str, sender: str,
                delivery_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if params.get("sender"):
        msg["Reply-To"] = params["sender"]
    msg["Subject"] = message.subject(event, params)
    msg["Date"] = formatdate(localtime=False)
    domain = sender.rpartition("@")[2] or "slurm-proxy"
    msg["Message-ID"] = f"<{delivery_id}@{domain}>"
    msg["X-Slurm-Proxy-Delivery"] = delivery_id
    msg.set_content(message.text(event))
    return msg


def check_domain(allowed: frozenset[str], address: str) -> None:
    if allowed and domain_of(address) not in allowed:
        raise PermanentNotificationError(
            f"recipient domain {domain_of(address)} is not in "
            f"NOTIFICATIONS_SMTP_ALLOWED_DOMAINS")


class EmailNotifier(Notifier):
    name = "email"
    Params = EmailParams
    required = ("recipient",)
    registry_defaults = {"subject": "{task} task finished", "body": "The {task} task has finished."}

    @classmethod
    def targets(cls, params):
        return recipients(params)

    @classmethod
    def check(cls, params, config):
        allowed = config["NOTIFICATIONS_SMTP_ALLOWED_DOMAINS"]
        bad = sorted({domain_of(r) for r in recipients(params)} - allowed) if allowed else []
        return {"recipient": [f"Recipient domain not allowed here: {', '.join(bad)}."]} if bad else {}

    def __init__(self, host: str, port: int, security: str, username: str, password: str,
                 sender: str, allowed_domains: frozenset[str], timeout: float):
        self.host, self.port, self.security = host, port, security
        self.username, self._password = username, password
        self.sender, self.allowed_domains, self.timeout = sender, allowed_domains, timeout

    @classmethod
    def from_config(cls, config):
        if not config.get("NOTIFICATIONS_SMTP_HOST"):
            return None
        return cls(config["NOTIFICATIONS_SMTP_HOST"], config["NOTIFICATIONS_SMTP_PORT"],
                   config["NOTIFICATIONS_SMTP_SECURITY"], config["NOTIFICATIONS_SMTP_USERNAME"],
                   config["NOTIFICATIONS_SMTP_PASSWORD"], config["NOTIFICATIONS_SMTP_FROM"],
                   config["NOTIFICATIONS_SMTP_ALLOWED_DOMAINS"],
                   config["NOTIFICATIONS_TIMEOUT"])

    def send(self, event, params, target, delivery_id):
        check_domain(self.allowed_domains, target)
        msg = build_email(event, params, target, self.sender, delivery_id)
        try:
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self._password)
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=[target])
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentNotificationError(f"SMTP server refused the recipient "
                                             f"({_codes(exc.recipients)})") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise NotificationError(f"SMTP login failed ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            error = PermanentNotificationError if 500 <= exc.smtp_code < 600 else NotificationError
            raise error(f"SMTP error {exc.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise NotificationError(f"SMTP server {self.host}:{self.port} not usable: "
                                    f"{exc.__class__.__name__}: {exc}") from None
        if refused:
            raise PermanentNotificationError(f"SMTP server refused {_codes(refused)}")


def _codes(recipients: dict) -> str:
    return ", ".join(f"{code}" for code, _ in recipients.values()) or "no reason"
