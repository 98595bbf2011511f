"""The notifier registry: adding a method is one module and one line in ``NOTIFIERS``.

Everything else is derived from the plugins: the methods a request may name (and
their aliases), the request schema of each method's params, the settings a task must
have, who each delivery goes to, and the operator's allow-lists. The registry is
checked when this module is imported, so a plugin that cannot say who it delivers
to stops the service at start-up instead of silently never sending.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from ..errors import ConfigError
from .apprise import AppriseNotifier
from .base import Notifier, PermanentNotificationError
from .email import EmailNotifier
from .gmail import GmailNotifier
from .rabbitmq import RabbitMQNotifier
from .slack import SlackNotifier
from .webhook import WebhookNotifier

logger = logging.getLogger(__name__)

NOTIFIERS: tuple[type[Notifier], ...] = (
    EmailNotifier, GmailNotifier, SlackNotifier, RabbitMQNotifier, WebhookNotifier,
    AppriseNotifier,
)


def index(classes) -> dict[str, type[Notifier]]:
    """Name and alias -> plugin; refuses an incomplete or ambiguous plugin."""
    out: dict[str, type[Notifier]] = {}
    for cls in classes:
        problems = [what for what, missing in (
            ("a name", not getattr(cls, "name", None)),
            ("a Params schema", not getattr(cls, "Params", None)),
            ("targets()", cls.targets.__func__ is Notifier.targets.__func__),
            ("send()", cls.send is Notifier.send),
            ("from_config()", cls.from_config.__func__ is Notifier.from_config.__func__),
        ) if missing]
        declared = set(getattr(cls, "Params", None)().fields) if not problems else set()
        problems += [f"a Params field for required {r!r}" for r in cls.required if r not in declared]
        problems += [f"a Params field for default {d!r}" for d in cls.registry_defaults
                     if d not in declared]
        for key in (cls.name, *cls.aliases):
            if key in out:
                problems.append(f"a name of its own ({key!r} is taken)")
            out[key] = cls
        if problems:
            raise ConfigError(f"Notification plugin {cls.__name__} lacks "
                              f"{', '.join(problems)}.")
    return out


PLUGINS: Mapping[str, type[Notifier]] = index(NOTIFIERS)
METHODS: tuple[str, ...] = tuple(cls.name for cls in NOTIFIERS)
ALIASES: Mapping[str, str] = {a: cls.name for cls in NOTIFIERS for a in cls.aliases}


def canonical_method(name: str) -> str:
    return ALIASES.get(name, name)


def targets(method: str, params: Mapping[str, Any]) -> list[str]:
    """Who one task's notification by ``method`` goes to. A method no plugin knows
    (a record older than a plugin's removal) still gets one delivery, which then
    fails with a reason anyone can read, rather than none."""
    cls = PLUGINS.get(method)
    return cls.targets(params) if cls is not None else ["default"]


def check_targets(notification: Mapping[str, Any],
                  config: Mapping[str, Any]) -> dict[str, list[str]]:
    """The operator's allow-lists for the methods a task names, field by field."""
    errors: dict[str, list[str]] = {}
    params = notification.get("params") or {}
    for cls in NOTIFIERS:
        if params.get(cls.name):
            for key, messages in cls.check(params[cls.name], config).items():
                errors[f"task.notification.params.{cls.name}.{key}"] = messages
    return errors


def missing_params(notification: Mapping[str, Any]) -> dict[str, list[str]]:
    """Settings a named method requires that neither the request nor the task
    registry gave."""
    params = notification.get("params") or {}
    return {f"task.notification.params.{method}.{key}": ["Missing data for required field."]
            for method in notification.get("methods") or []
            for key in PLUGINS[method].required
            if not (params.get(method) or {}).get(key)}


def registry_params(task_name: str) -> dict[str, dict[str, str]]:
    """Every method's canned settings for a task-registry entry."""
    return {cls.name: {k: v.format(task=task_name) for k, v in cls.registry_defaults.items()}
            for cls in NOTIFIERS if cls.registry_defaults}


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


__all__ = ["ALIASES", "METHODS", "NOTIFIERS", "PLUGINS", "Notifier", "PermanentNotificationError",
           "build_notifiers", "canonical_method", "check_targets", "missing_params",
           "registry_params", "targets"]
