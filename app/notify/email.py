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

from ..errors import NotificationError
from ..schemas.notification import EmailParams
from . import message
from .base import Notifier, PermanentNotificationError, csv_set


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
    if allowed and address.rpartition("@")[2].lower() not in allowed:
        raise PermanentNotificationError(
            f"recipient domain {address.rpartition('@')[2]} is not in "
            f"NOTIFICATIONS_SMTP_ALLOWED_DOMAINS")


class EmailNotifier(Notifier):
    name = "email"
    Params = EmailParams

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
                   csv_set(config["NOTIFICATIONS_SMTP_ALLOWED_DOMAINS"]),
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
