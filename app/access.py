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


def register_access_control(app: Flask, keys, config: Mapping[str, Any]):
    """The key check, then the per-key limits (flask-limiter, whose own check is
    registered after ours so that it only ever counts authenticated requests).
    Without a per-key limit flask-limiter is not registered at all: its before- and
    after-request work was about 5 % of a submit's CPU while enforcing nothing.
    Returns the limiter, or None."""
    public = set(PUBLIC_ENDPOINTS) | (DOCS_ENDPOINTS if config["SLURM_PROXY_PUBLIC_DOCS"] else set())
    enabled = config["SLURM_PROXY_AUTH"]
    if not enabled:
        logger.warning("*** SLURM_PROXY_AUTH is off: anyone who can reach %s may run "
                       "anything as any user. Loopback only. ***", config["SLURM_PROXY_HOST"])
    limiter = build_limiter(config) if config["SLURM_PROXY_RATE_LIMIT"] else None
    guard = AddressLimit(config["SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT"],
                         limit_storage_uri(config), limiter)

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

    if limiter is not None:
        limiter.init_app(app)
    return limiter


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


def build_limiter(config: Mapping[str, Any]):
    """Per-key limits, shared between workers when MongoDB is configured."""
    from flask_limiter import Limiter

    storage = limit_storage_uri(config)

    def key_func() -> str:
        key = g.get("api_key")
        return f"key:{key.id}" if key is not None else f"addr:{request.remote_addr}"

    return Limiter(key_func=key_func, storage_uri=storage,
                   default_limits=[config["SLURM_PROXY_RATE_LIMIT"]] if config["SLURM_PROXY_RATE_LIMIT"] else [],
                   headers_enabled=True, strategy="moving-window",
                   default_limits_exempt_when=lambda: request.endpoint in PUBLIC_ENDPOINTS)


class AddressLimit:
    """The limit for requests without a valid key, per client address, counted in the
    limiter's storage (so shared between workers) under its own names: it never takes
    from a key's budget, and a key's requests never take from it. Without per-key
    limits (no flask-limiter), the same storage and moving window, opened at the first
    request without a valid key."""

    def __init__(self, spec: str, storage_uri: str, limiter=None):
        from limits import parse_many

        self.items = parse_many(spec) if spec.strip() else []
        self._storage_uri = storage_uri
        self._flask_limiter = limiter
        self._own = None
        self._lock = threading.Lock()

    @property
    def limiter(self):
        """The ``limits`` strategy that counts: flask-limiter's when it runs."""
        if self._flask_limiter is not None:
            return self._flask_limiter.limiter
        with self._lock:
            if self._own is None:
                from limits.storage import storage_from_string
                from limits.strategies import MovingWindowRateLimiter

                self._own = MovingWindowRateLimiter(storage_from_string(self._storage_uri))
            return self._own

    def hit(self, address: str) -> None:
        """Count one unauthenticated request from ``address``; TooManyRequests (429
        with Retry-After) once the address is over the limit."""
        for item in self.items:
            try:
                allowed = self.limiter.hit(item, "unauthenticated", address)
                if allowed:
                    continue
                reset, _ = self.limiter.get_window_stats(item, "unauthenticated", address)
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
