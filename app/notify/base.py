"""The notifier plugin contract: a plugin declares everything about its method.

- ``name`` (the value clients send in ``notification.methods``) and ``aliases``;
- ``Params``, the marshmallow schema of its per-task settings, and ``required``, the
  settings a task must end up with once the task registry's defaults are merged in;
- ``targets(params)``: who one task's notification goes to (one delivery per state
  and target); a plugin without it is refused at start-up, never a silent no-send;
- ``check(params, config)``: the operator's allow-lists, enforced before a task is
  saved or submitted (``{param: [message]}``);
- ``registry_defaults``: its canned settings for the task registry's entries
  (``{task}`` is replaced by the task's name);
- ``from_config(config)``: an instance, or None when the operator has not configured
  it (secrets come only from here, never from a request);
- ``send(event, params, target, delivery_id)``, which raises ``NotificationError``.

``app/notify/__init__.py`` lists the plugins; the request schema, the accepted
methods, the delivery targets and the policy checks are all derived from that list.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

from marshmallow import Schema

from ..errors import NotificationError


class PermanentNotificationError(NotificationError):
    """Retrying cannot help (bad address, channel not found, HTTP 4xx)."""


class Notifier:
    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[Schema]]
    required: ClassVar[tuple[str, ...]] = ()
    registry_defaults: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def targets(cls, params: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    @classmethod
    def check(cls, params: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, list[str]]:
        return {}

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

