"""The wiring: ``build(config)`` makes the parts a program needs from its settings.

One function for every program: the web app (``create_app``), the poller program
(``poller.build_poller``) and the key command (``python -m app.keys``). Each asks for
the parts it uses; a part given by the caller (a test double) is used as it is.

Nothing here connects: the MongoClient is made with ``connect=False`` and the Slurm
sessions on first use, so building is safe before a forking server forks. There is
one MongoClient per ``build`` (so per process), shared by the task store and the key
store.

The web app keeps its ``Services`` in ``app.extensions["slurm_proxy"]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from flask import current_app

WEB = frozenset({"store", "slurm", "keys"})
POLLER = frozenset({"store", "slurm", "notifiers"})
KEYS = frozenset({"keys"})


@dataclass
class Services:
    config: dict[str, Any]
    store: Any = None       # app.store.TaskStore (or a test double with the same methods)
    slurm: Any = None       # app.slurm.clusters.Clusters of SlurmClient (or fakes)
    keys: Any = None        # app.auth key store
    cluster_cache: Any = None   # app.actions.ClusterCache (web)
    feed: Any = None            # app.watch.ChangeFeed: this process's waiters (web)
    notifiers: Any = None       # method name -> Notifier (poller)
    mongo: Any = None           # the process's one MongoClient, if MONGODB_URI is set


def build(config: Mapping[str, Any], parts=WEB, *, store=None, slurm=None, keys=None,
          notifiers=None) -> Services:
    """The ``parts`` ("store", "slurm", "keys", "notifiers") of a program, from its
    settings; ``store=``/``slurm=``/``keys=``/``notifiers=`` are used as given."""
    from .store import mongo_client

    needs_mongo = bool(config.get("MONGODB_URI")) and (
        ("store" in parts and store is None) or ("keys" in parts and keys is None))
    mongo = mongo_client(config) if needs_mongo else None
    if "store" in parts and store is None:
        store = build_store(config, mongo)
    if "slurm" in parts or slurm is not None:
        slurm = as_clusters(slurm if slurm is not None else build_slurm_clients(config), config)
    if "keys" in parts and keys is None:
        keys = build_key_store(config, mongo)
    if "notifiers" in parts and notifiers is None:
        from .notify import build_notifiers
        notifiers = build_notifiers(config)
    return Services(config=config, store=store, slurm=slurm, keys=keys,
                    notifiers=notifiers, mongo=mongo)


def build_store(config: Mapping[str, Any], mongo=None):
    """The task store on ``mongo``, or the embedded one without MONGODB_URI."""
    from .store import TaskStore

    return TaskStore.from_config(config, client=mongo)


def build_key_store(config: Mapping[str, Any], mongo=None):
    """API keys in MongoDB (collection ``api_keys``) with MONGODB_URI, else in
    SLURM_PROXY_API_KEYS_FILE."""
    if config.get("MONGODB_URI"):
        from .store import MongoKeyStore, mongo_client

        mongo = mongo if mongo is not None else mongo_client(config)
        return MongoKeyStore(mongo[config["MONGODB_DB"]]["api_keys"])
    from .auth import FileKeyStore

    return FileKeyStore(config["SLURM_PROXY_API_KEYS_FILE"])


def build_slurm_clients(config: Mapping[str, Any]):
    """A ``Clusters`` of one SlurmClient per configured cluster."""
    from .config import slurm_auth_from_config
    from .slurm.client import SlurmClient
    from .slurm.clusters import Clusters, cluster_configs
    from .slurm.transport import Transport

    clients = {}
    for name, settings in cluster_configs(config).items():
        transport = Transport(settings["SLURM_BASE_URL"], slurm_auth_from_config(settings),
                              connect_timeout=settings["SLURM_CONNECT_TIMEOUT"],
                              read_timeout=settings["SLURM_READ_TIMEOUT"])
        clients[name] = SlurmClient(transport, settings["SLURM_API_VERSION"])
    return Clusters(clients)


def as_clusters(slurm, config: Mapping[str, Any]):
    """A single client (a test double, say) becomes a one-cluster ``Clusters``."""
    from .slurm.clusters import Clusters

    return slurm if isinstance(slurm, Clusters) else Clusters({config["SLURM_CLUSTER_NAME"]: slurm})


def get_services() -> Services:
    return current_app.extensions["slurm_proxy"]
