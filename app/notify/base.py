"""The notifier plugin contract (apprise's, without its discovery machinery).

A plugin declares ``name`` (its registry key and the value clients send in
``notification.methods``), ``Params`` (the marshmallow schema of its per-task
settings), ``from_config(config)`` (returns an instance, or None when the operator has
not configured it; secrets come only from here, never from a request) and
``send(event, params, target, delivery_id)``, which raises ``NotificationError``.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

from marshmallow import Schema

from ..errors import NotificationError


class PermanentNotificationError(NotificationError):
    """Retrying cannot help (bad address, channel not found, HTTP 4xx)."""


class Notifier:
    name: ClassVar[str]
    Params: ClassVar[type[Schema]]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Notifier | None":
        raise NotImplementedError

    def send(self, event: dict[str, Any], params: Mapping[str, Any], target: str,
             delivery_id: str) -> None:
        raise NotImplementedError

    @staticmethod
    def redact(target: str) -> str:
        """A target fit for logs: no URL paths or tokens, half of an address."""
        if "://" in target:
            scheme, _, rest = target.partition("://")
            return f"{scheme}://{rest.split('/', 1)[0]}/…"
        if "@" in target:
            local, _, domain = target.partition("@")
            return f"{local[:2]}…@{domain}"
        return target


def csv_set(value: str | None) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in (value or "").split(",") if v.strip())
