"""``gmail``: the Gmail API through google-api-python-client, as the reference did.

NOTIFICATIONS_GMAIL_CREDENTIALS_FILE holds an authorized-user token (the JSON the
Gmail quick-start writes, with a refresh token) for the sending account. The message
is the same as ``email``'s, with the same Message-ID.
"""
from __future__ import annotations

import base64
import logging

from ..errors import NotificationError
from .base import Notifier, PermanentNotificationError
from .email import EmailNotifier, build_email, check_domain

logger = logging.getLogger(__name__)
SCOPES = ["https://www.googleapis.com/auth/gmail.send"]


class GmailNotifier(Notifier):
    """The same settings, targets and recipient allow-list as ``email``."""
    name = "gmail"
    Params = EmailNotifier.Params
    required = EmailNotifier.required
    registry_defaults = EmailNotifier.registry_defaults
    targets = EmailNotifier.targets
    check = EmailNotifier.check

    def __init__(self, credentials_file: str, sender: str, allowed_domains: frozenset[str],
                 timeout: float, http=None):
        self.credentials_file, self.sender = credentials_file, sender
        self.allowed_domains, self.timeout = allowed_domains, timeout
        self._http = http          # tests pass googleapiclient.http.HttpMockSequence

    @classmethod
    def from_config(cls, config):
        if not config.get("NOTIFICATIONS_GMAIL_CREDENTIALS_FILE"):
            return None
        import googleapiclient  # noqa: F401 - fail at start-up if missing, not per message
        return cls(config["NOTIFICATIONS_GMAIL_CREDENTIALS_FILE"],
                   config["NOTIFICATIONS_GMAIL_SENDER"],
                   config["NOTIFICATIONS_SMTP_ALLOWED_DOMAINS"],
                   config["NOTIFICATIONS_TIMEOUT"])

    def _service(self):
        from googleapiclient.discovery import build

        if self._http is not None:
            return build("gmail", "v1", http=self._http, cache_discovery=False)
        import google_auth_httplib2
        import httplib2
        from google.oauth2.credentials import Credentials

        creds = Credentials.from_authorized_user_file(self.credentials_file, SCOPES)
        http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=self.timeout))
        return build("gmail", "v1", http=http, cache_discovery=False)

    def send(self, event, params, target, delivery_id):
        """Returns the Gmail API's answer (the sent message resource)."""
        from googleapiclient.errors import HttpError

        check_domain(self.allowed_domains, target)
        msg = build_email(event, params, target, self.sender, delivery_id)
        raw = base64.urlsafe_b64encode(msg.as_bytes()).decode()
        try:
            return self._service().users().messages().send(userId="me", body={"raw": raw}).execute()
        except HttpError as exc:
            status = int(getattr(exc.resp, "status", 0) or 0)
            error = (PermanentNotificationError if 400 <= status < 500 and status not in (408, 429)
                     else NotificationError)
            raise error(f"Gmail API answered HTTP {status}") from None
        except (OSError, ValueError) as exc:
            raise NotificationError(f"Gmail API not usable: {exc.__class__.__name__}") from None
