"""What a task may ask for, beyond its schema: the operator's limits.

- users the service never acts for (SLURM_PROXY_DENIED_USERS, default root);
- where a task may read and write (SLURM_PROXY_ALLOWED_PATH_PREFIXES, e.g.
  ``/home/{username},/project``; empty: any absolute path);
- who may be notified: each notifier plugin's own allow-lists (recipient domains,
  Slack channels, webhook destinations, Apprise target names), ``notify.check_targets``.

Each refusal is a 400 naming the field (or a 403 for a denied user), before anything
is saved or submitted.
"""
from __future__ import annotations

import posixpath
from typing import Any, Mapping

from .auth import Forbidden
from .errors import invalid
from .notify import check_targets


def check_user(username: str, config: Mapping[str, Any]) -> None:
    if username.lower() in config["SLURM_PROXY_DENIED_USERS"]:
        raise Forbidden(f"This service never acts for user {username!r}.")


def is_under(path: str, prefix: str) -> bool:
    prefix = posixpath.normpath(prefix)
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def check_task(plan: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    check_user(plan["username"], config)
    errors: dict[str, list[str]] = {}
    prefixes = [p.replace("{username}", plan["username"])
                for p in config["SLURM_PROXY_ALLOWED_PATH_PREFIXES"]]
    if prefixes:
        paths = {"task.cwd": plan.get("cwd")}
        paths.update({f"task.dirs.{k}": v for k, v in (plan.get("dirs") or {}).items()})
        for field, path in paths.items():
            if path and not any(is_under(path, p) for p in prefixes):
                errors[field] = [f"Outside the allowed paths ({', '.join(prefixes)})."]
    errors.update(check_targets(plan.get("notification") or {}, config))
    if errors:
        raise invalid(errors)
