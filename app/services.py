"""The per-app services, kept in ``app.extensions["slurm_proxy"]``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app


@dataclass
class Services:
    config: dict[str, Any]
    store: Any          # app.store.TaskStore (or a test double with the same methods)
    slurm: Any          # app.slurm.client.SlurmClient (or a fake)
    keys: Any = None    # app.auth key store
    cluster_cache: Any = None   # app.actions.ClusterCache
    feed: Any = None            # app.watch.ChangeFeed: this process's waiters


def get_services() -> Services:
    return current_app.extensions["slurm_proxy"]
