"""Who may call what: the API-key check on every route but health, the role each
route needs, rate limits (429 with Retry-After): per client address for requests
without a valid key, per key for the others; and the docs page.

Per-task authorization (may this key act for this task's user?) is checked where the
task is known, in ``app.tasks``.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any, Mapping

from flask import Flask, Response, g, jsonify, redirect, request, send_from_directory, url_for

from . import metrics
from .auth import ANONYMOUS, Forbidden, Unauthorized, authenticate
from .errors import TooManyRequests

logger = logging.getLogger(__name__)

# Endpoint -> role. Endpoints not listed need a valid key and no particular role.
ENDPOINT_ROLES = {
    "submit.submit": "submit",
    "monitor.register": "submit",
    "monitor.by_uuid": "read",
    "monitor.by_job_id": "read",
    "monitor.list_tasks": "read",
    "monitor.output": "read",
    "monitor.cancel_by_uuid": "cancel",
    "monitor.cancel_by_job_id": "cancel",
    "monitor.resubmit": "submit",
    "cluster.cluster": "read",
    "watch.task_events": "read",
    "watch.all_events": "read",
    # the web page (app/ui): the same roles for the same actions
    "ui.tasks": "read",
    "ui.events": "read",
    "ui.task": "read",
    "ui.task_record": "read",
    "ui.task_events": "read",
    "ui.task_output": "read",
    "ui.cancel": "cancel",
    "ui.resubmit": "submit",
    "ui.submit": "submit",
    "ui.cluster": "read",
}
ROLE_BY_BLUEPRINT = {"slurm": "admin"}
# events.jobcomp checks its own credentials (HTTP Basic, the cluster's event secret).
PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "ui.login", "ui.static", "events.jobcomp"}
DOCS_ENDPOINTS = {"api-docs.openapi_json", "docs", "docs_static"}


def required_role(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    if endpoint in ENDPOINT_ROLES:
        return ENDPOINT_ROLES[endpoint]
    return ROLE_BY_BLUEPRINT.get(endpoint.partition(".")[0])


def register_access_control(app: Flask, keys, config: Mapping[str, Any], mongo=None):
    """The key check, then the per-key limit (``KeyLimit``, after the check so that it
    only ever counts authenticated requests), and its headers on the answer. Without
    a per-key limit nothing is counted for keys at all. ``mongo`` is the process's
    MongoClient, for limits counted in MongoDB. Returns the ``KeyLimit``, or None."""
    public = set(PUBLIC_ENDPOINTS) | (DOCS_ENDPOINTS if config["SLURM_PROXY_PUBLIC_DOCS"] else set())
    enabled = config["SLURM_PROXY_AUTH"]
    if not enabled:
        logger.warning("*** SLURM_PROXY_AUTH is off: anyone who can reach %s may run "
                       "anything as any user. Loopback only. ***", config["SLURM_PROXY_HOST"])
    counter = LimitCounter(limit_storage_uri(config), mongo if uses_mongo(config) else None)
    key_limit = KeyLimit(config["SLURM_PROXY_RATE_LIMIT"], counter) \
        if config["SLURM_PROXY_RATE_LIMIT"].strip() else None
    guard = AddressLimit(config["SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT"], counter)

    @app.before_request
    def _check_key():
        if request.endpoint in public:
            return None
        if request.blueprint == "ui" or (request.endpoint in DOCS_ENDPOINTS
                                         and "Authorization" not in request.headers):
            key = _person(keys, config) if enabled else ANONYMOUS
            if key is None:
                return _sign_in_first()
        elif enabled:
            header = request.headers.get("Authorization")
            try:
                key = authenticate(keys, header)
            except Unauthorized:
                metrics.AUTH_FAILURES.labels("invalid" if header else "missing").inc()
                guard.hit(request.remote_addr or "-")        # 429 once over the limit
                raise
        else:
            key = ANONYMOUS
        g.api_key = key
        role = required_role(request.endpoint)
        if role is not None and not key.has_role(role):
            raise Forbidden(f"API key {key.name!r} lacks the {role!r} role.")
        return None

    if key_limit is not None:
        @app.before_request
        def _limit_key():
            endpoint = request.endpoint
            if endpoint and endpoint not in PUBLIC_ENDPOINTS:
                key = g.get("api_key")
                g.limit_headers = key_limit.hit(
                    f"key:{key.id}" if key is not None else f"addr:{request.remote_addr}",
                    endpoint)

        @app.after_request
        def _limit_headers(response):
            for name, value in g.get("limit_headers", ()):
                response.headers[name] = value
            return response
    return key_limit


def _person(keys, config):
    """The web page's signed-in person (app.ui), as the API key they act with."""
    from .ui import identity

    return identity(keys, config)


def _sign_in_first():
    if request.endpoint in DOCS_ENDPOINTS or request.path.endswith((".json", "/events")):
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>', or sign in at /ui/login.")
    if request.method == "POST":
        raise Unauthorized("Not signed in (or the session ended): sign in at /ui/login.")
    return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))


def current_key():
    return g.get("api_key", ANONYMOUS)


def limit_storage_uri(config: Mapping[str, Any]) -> str:
    return config["SLURM_PROXY_RATE_LIMIT_STORAGE"] or config["MONGODB_URI"] or "memory://"


def uses_mongo(config: Mapping[str, Any]) -> bool:
    """Whether limits are counted in the service's own MongoDB (its client then serves)."""
    return bool(config["MONGODB_URI"]) and limit_storage_uri(config) == config["MONGODB_URI"]


class LimitCounter:
    """The ``limits`` moving-window counter both limits count with, over the configured
    storage (shared between workers and hosts when it is MongoDB or Redis), opened at
    its first use. In the service's own MongoDB it counts through the process's one
    MongoClient (``store.limit_storage``)."""

    def __init__(self, storage_uri: str, mongo=None):
        self._storage_uri, self._mongo = storage_uri, mongo
        self._strategy = None
        self._lock = threading.Lock()

    @property
    def strategy(self):
        if self._strategy is not None:          # every counted request: no lock
            return self._strategy
        with self._lock:
            if self._strategy is None:
                from limits.storage import storage_from_string
                from limits.strategies import MovingWindowRateLimiter

                if self._mongo is not None:
                    from .store import limit_storage
                    storage = limit_storage(self._mongo)
                else:
                    storage = storage_from_string(self._storage_uri)
                self._strategy = MovingWindowRateLimiter(storage)
            return self._strategy


class KeyLimit:
    """SLURM_PROXY_RATE_LIMIT (e.g. ``20/second;600/minute``): per key, and per route, in
    a moving window. Each request is counted against each limit, shortest window first,
    up to the first it exceeds (then 429 with Retry-After). Every counted answer says
    where it stands in ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` (epoch seconds)
    and ``Retry-After``, for the exceeded limit or else the shortest: the rules and
    headers flask-limiter applied here before. Should the storage fail, the request is
    let through uncounted (and logged), as the per-address limit does."""

    def __init__(self, spec: str, counter: LimitCounter):
        from limits import parse_many

        self.items = sorted(parse_many(spec))
        self._counter = counter

    def hit(self, who: str, endpoint: str) -> list[tuple[str, str]]:
        """Count one request by ``who`` (``key:<id>``) to ``endpoint``; its headers, or
        TooManyRequests carrying them."""
        try:
            strategy = self._counter.strategy
            shown, exceeded = self.items[0], None
            for item in self.items:
                if not strategy.hit(item, who, endpoint):
                    shown = exceeded = item
                    break
            reset, remaining = strategy.get_window_stats(shown, who, endpoint)
        except Exception as exc:  # noqa: BLE001 - a storage outage must not turn into 500s
            logger.warning("per-key limit not counted: %s", exc.__class__.__name__)
            return []
        reset = int(reset + 1)
        headers = [("X-RateLimit-Limit", str(shown.amount)), ("X-RateLimit-Remaining", str(remaining)),
                   ("X-RateLimit-Reset", str(reset)), ("Retry-After", str(int(reset - time.time())))]
        if exceeded is not None:
            logger.info("rate limit %s exceeded by %s at %s", exceeded, who, endpoint)
            raise TooManyRequests(f"Too many requests ({exceeded}); retry after the "
                                  f"Retry-After seconds.", headers=dict(headers))
        return headers


class AddressLimit:
    """The limit for requests without a valid key, per client address, counted by the
    same ``LimitCounter`` under its own names: it never takes from a key's budget, and a
    key's requests never take from it."""

    def __init__(self, spec: str, counter: LimitCounter):
        from limits import parse_many

        self.items = parse_many(spec) if spec.strip() else []
        self._counter = counter

    def hit(self, address: str) -> None:
        """Count one unauthenticated request from ``address``; TooManyRequests (429
        with Retry-After) once the address is over the limit."""
        for item in self.items:
            try:
                limiter = self._counter.strategy
                allowed = limiter.hit(item, "unauthenticated", address)
                if allowed:
                    continue
                reset, _ = limiter.get_window_stats(item, "unauthenticated", address)
            except Exception as exc:  # noqa: BLE001 - a storage outage must not turn 401 into 500
                logger.warning("unauthenticated-request limit not counted: %s", exc.__class__.__name__)
                return
            retry = max(1, math.ceil(reset - time.time()))
            metrics.ADDRESS_LIMITED.inc()
            raise TooManyRequests(
                f"Too many requests without a valid API key from this address ({item}); "
                f"retry after {retry} s.", headers={"Retry-After": str(retry)})


SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>slurm-proxy API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/swagger-ui-standalone-preset.js"></script>
<script src="/docs/static/init.js"></script>
</body></html>
"""
# Not inline: the page's CSP allows scripts from this origin only.
SWAGGER_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout", deepLinking: true, persistAuthorization: false,
  tryItOutEnabled: false, validatorUrl: null});
"""
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                 "favicon-32x32.png", "favicon-16x16.png")


def swagger_ui_dir() -> str:
    """Swagger UI 5 (reads OpenAPI 3.1), installed from npm's registry into
    web/node_modules by scripts/setup.sh and the Dockerfile (web/package.json)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "web", "node_modules", "swagger-ui-dist")


def register_docs(app: Flask) -> None:
    """``/docs``: Swagger UI served by the service itself, no CDN."""
    assets = swagger_ui_dir()
    if not os.path.isfile(os.path.join(assets, "swagger-ui-bundle.js")):
        logger.warning("Swagger UI is not installed in %s: /docs answers 503 until "
                       "scripts/setup.sh (npm ci in web/) has run.", assets)

    @app.get("/docs", endpoint="docs")
    def docs():
        if not os.path.isfile(os.path.join(assets, "swagger-ui-bundle.js")):
            return jsonify({"code": "docs_not_installed", "status": 503, "errors": {},
                            "message": "Swagger UI is not installed: run scripts/setup.sh "
                                       "(npm ci in web/). /openapi.json works without it."}), 503
        return Response(SWAGGER_PAGE, mimetype="text/html")

    @app.get("/docs/static/<path:filename>", endpoint="docs_static")
    def docs_static(filename):
        if filename == "init.js":
            return Response(SWAGGER_INIT, mimetype="text/javascript")
        if filename not in SWAGGER_FILES:
            return jsonify({"code": "not_found", "status": 404, "errors": {},
                            "message": f"No such file: {filename}"}), 404
        return send_from_directory(assets, filename, max_age=3600)
