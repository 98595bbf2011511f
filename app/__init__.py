"""The application factory.

``create_app`` takes its parts from ``services.build`` (the one wiring, shared with the
poller program and the key command); it connects to nothing (``MongoClient(connect=False)``,
the Slurm session is made on first use) and starts no thread, so it is safe under a
forking server and in tests. Tests pass ``store=``/``slurm=``/``keys=`` doubles instead
of monkeypatching modules.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from typing import Any, Mapping

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Api

from .access import register_access_control, register_docs
from . import services as wiring
from .config import load_config
from .errors import register_error_handlers

logger = logging.getLogger(__name__)


class JSONProvider(DefaultJSONProvider):
    """ISO 8601 times (``2026-11-23T15:04:05.123Z``), not HTTP dates."""

    sort_keys = False

    @staticmethod
    def default(o: Any):
        if isinstance(o, datetime):
            if o.tzinfo is None:
                o = o.replace(tzinfo=timezone.utc)
            return o.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if isinstance(o, date):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


def create_app(test_config: Mapping[str, Any] | None = None, *, store=None, slurm=None,
               keys=None, environ: Mapping[str, str] | None = None) -> Flask:
    config = load_config(environ, test_config)
    app = Flask(__name__)
    app.json_provider_class = JSONProvider
    app.json = JSONProvider(app)
    app.config.update(
        MAX_CONTENT_LENGTH=config["SLURM_PROXY_MAX_BODY_BYTES"],
        API_TITLE="slurm-proxy",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "security": [{"bearerAuth": []}],
            "components": {"securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An API key: `Authorization: Bearer sp_<id>_<secret>`"}}},
        },
    )
    services = wiring.build(config, wiring.WEB, store=store, slurm=slurm, keys=keys)
    if store is None and getattr(services.store, "is_embedded", False):
        logger.warning(
            "*** MONGODB_URI is not set: using an embedded in-memory store. Task "
            "records are NOT kept across restarts and are not shared between "
            "processes. Set MONGODB_URI for real use. ***")
    from .actions import ClusterCache
    from .watch import ChangeFeed

    services.cluster_cache = ClusterCache(config["SLURM_PROXY_CLUSTER_CACHE_SECONDS"])
    services.feed = ChangeFeed(services.store, interval=config["SLURM_PROXY_WATCH_INTERVAL"])
    app.extensions["slurm_proxy"] = services
    from .blueprints import health
    health.instrument(app)
    key_limit = register_access_control(app, services.keys, config, services.mongo)
    register_docs(app)

    api = Api(app)
    from .blueprints import cluster, monitor, slurm as slurm_routes, submit, watch

    api.register_blueprint(submit.blp)
    api.register_blueprint(monitor.blp)
    api.register_blueprint(slurm_routes.blp)
    api.register_blueprint(cluster.blp)
    api.register_blueprint(watch.blp)
    app.register_blueprint(health.blp)
    from .ui import register_ui
    register_ui(app, config)
    from .blueprints import events
    app.register_blueprint(events.blp)
    # After Api(), which registers its own HTTPException handler: ours wins.
    register_error_handlers(app)
    app.wsgi_app = submit.SubmitPath(app, services, key_limit)
    if config["SLURM_PROXY_TRUSTED_PROXIES"]:
        # The client's address (for the per-address limit, and the access line) from
        # X-Forwarded-For, as set by that many reverse proxies in front; never trusted
        # otherwise. Outermost, so that every path sees it.
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config["SLURM_PROXY_TRUSTED_PROXIES"])
    return app
