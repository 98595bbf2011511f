"""The notifier registry: adding a method is one line in ``NOTIFIERS``."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from .base import Notifier, PermanentNotificationError
from .email import EmailNotifier
from .gmail import GmailNotifier
from .rabbitmq import RabbitMQNotifier
from .slack import SlackNotifier
from .webhook import WebhookNotifier

logger = logging.getLogger(__name__)

NOTIFIERS: tuple[type[Notifier], ...] = (
    EmailNotifier, GmailNotifier, SlackNotifier, RabbitMQNotifier, WebhookNotifier,
)


def build_notifiers(config: Mapping[str, Any]) -> dict[str, Notifier]:
    """The configured notifiers; a method not configured, or whose library is
    missing, is left out with one warning (its deliveries then fail with a clear reason)."""
    out: dict[str, Notifier] = {}
    for cls in NOTIFIERS:
        try:
            notifier = cls.from_config(config)
        except ImportError as exc:
            logger.warning("notification method %s disabled: %s is not installed", cls.name, exc.name)
            continue
        if notifier is None:
            logger.info("notification method %s not configured", cls.name)
        else:
            out[cls.name] = notifier
    return out


__all__ = ["NOTIFIERS", "Notifier", "PermanentNotificationError", "build_notifiers"]
