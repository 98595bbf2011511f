"""What a task may ask for, beyond its schema: the operator's limits.

- users the service never acts for (SLURM_PROXY_DENIED_USERS, default root);
- where a task may read and write (SLURM_PROXY_ALLOWED_PATH_PREFIXES, e.g.
  ``/home/{username},/project``; empty: any absolute path);
- who may be notified: recipient domains, Slack channels, webhook destinations.

Each refusal is a 400 naming the field (or a 403 for a denied user), before anything
is saved or submitted.
"""
from __future__ import annotations

import posixpath
from typing import Any, Mapping

from .auth import Forbidden
from .errors import InvalidRequest
from .notify.base import csv_set
from .notify.webhook import check_destination, networks


def _split(text: str) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def check_user(username: str, config: Mapping[str, Any]) -> None:
    if username.lower() in csv_set(config["SLURM_PROXY_DENIED_USERS"]):
        raise Forbidden(f"This service never acts for user {username!r}.")


def is_under(path: str, prefix: str) -> bool:
    prefix = posixpath.normpath(prefix)
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def check_task(plan: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    check_user(plan["username"], config)
    errors: dict[str, list[str]] = {}
    prefixes = [p.replace("{username}", plan["username"])
                for p in _split(config["SLURM_PROXY_ALLOWED_PATH_PREFIXES"])]
    if prefixes:
        paths = {"task.cwd": plan.get("cwd")}
        paths.update({f"task.dirs.{k}": v for k, v in (plan.get("dirs") or {}).items()})
        for field, path in paths.items():
            if path and not any(is_under(path, p) for p in prefixes):
                errors[field] = [f"Outside the allowed paths ({', '.join(prefixes)})."]
    errors.update(check_notification_targets(plan.get("notification") or {}, config))
    if errors:
        raise InvalidRequest("Invalid request: " + "; ".join(
            f"{k}: {' '.join(v)}" for k, v in sorted(errors.items())), errors=errors)


def check_notification_targets(notification: Mapping[str, Any],
                               config: Mapping[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    params = notification.get("params") or {}
    domains = csv_set(config["NOTIFICATIONS_SMTP_ALLOWED_DOMAINS"])
    for method in ("email", "gmail"):
        recipients = (params.get(method) or {}).get("recipient")
        recipients = recipients if isinstance(recipients, list) else [recipients] if recipients else []
        bad = [r for r in recipients if domains and r.rpartition("@")[2].lower() not in domains]
        if bad:
            errors[f"task.notification.params.{method}.recipient"] = [
                f"Recipient domain not allowed here: {', '.join(sorted(set(b.rpartition('@')[2] for b in bad)))}."]
    channels = csv_set(config["NOTIFICATIONS_SLACK_ALLOWED_CHANNELS"])
    channel = (params.get("slack") or {}).get("channel")
    if channels and channel and channel.lower() not in channels:
        errors["task.notification.params.slack.channel"] = ["Channel not allowed here."]
    url = (params.get("webhook") or {}).get("url")
    if url:
        try:
            check_destination(url, allow_http=config["NOTIFICATIONS_WEBHOOK_ALLOW_HTTP"],
                              allowed_networks=networks(config["NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS"]),
                              resolve=False)
        except ValueError as exc:
            errors["task.notification.params.webhook.url"] = [f"{str(exc).capitalize()}."]
    return errors
