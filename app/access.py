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
import time
from typing import Any, Mapping

from flask import Flask, Response, g, request, send_from_directory

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
}
ROLE_BY_BLUEPRINT = {"slurm": "admin"}
# events.jobcomp checks its own credentials (HTTP Basic, the cluster's event secret).
PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "events.jobcomp"}
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
    Returns the limiter."""
    public = set(PUBLIC_ENDPOINTS) | (DOCS_ENDPOINTS if config["SLURM_PROXY_PUBLIC_DOCS"] else set())
    enabled = config["SLURM_PROXY_AUTH"]
    if not enabled:
        logger.warning("*** SLURM_PROXY_AUTH is off: anyone who can reach %s may run "
                       "anything as any user. Loopback only. ***", config["SLURM_PROXY_HOST"])
    limiter = build_limiter(config)
    guard = AddressLimit(limiter, config["SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT"])

    @app.before_request
    def _check_key():
        if request.endpoint in public:
            return None
        if enabled:
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

    limiter.init_app(app)
    return limiter


def current_key():
    return g.get("api_key", ANONYMOUS)


def build_limiter(config: Mapping[str, Any]):
    """Per-key limits, shared between workers when MongoDB is configured."""
    from flask_limiter import Limiter

    storage = (config["SLURM_PROXY_RATE_LIMIT_STORAGE"] or config["MONGODB_URI"] or "memory://")

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
    from a key's budget, and a key's requests never take from it."""

    def __init__(self, limiter, spec: str):
        from limits import parse_many

        self.limiter = limiter
        self.items = parse_many(spec) if spec.strip() else []

    def hit(self, address: str) -> None:
        """Count one unauthenticated request from ``address``; TooManyRequests (429
        with Retry-After) once the address is over the limit."""
        for item in self.items:
            try:
                allowed = self.limiter.limiter.hit(item, "unauthenticated", address)
                if allowed:
                    continue
                reset, _ = self.limiter.limiter.get_window_stats(item, "unauthenticated", address)
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
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/swagger-ui-standalone-preset.js"></script>
<script src="/docs/static/init.js"></script>
</body></html>
"""
SWAGGER_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout", persistAuthorization: false});
"""


def register_docs(app: Flask) -> None:
    """``/docs``: Swagger UI from the swagger-ui-bundle package, no CDN."""
    import swagger_ui_bundle

    assets = swagger_ui_bundle.swagger_ui_path

    @app.get("/docs", endpoint="docs")
    def docs():
        return Response(SWAGGER_PAGE, mimetype="text/html")

    @app.get("/docs/static/<path:filename>", endpoint="docs_static")
    def docs_static(filename):
        if filename == "init.js":
            return Response(SWAGGER_INIT, mimetype="application/javascript")
        return send_from_directory(os.fspath(assets), filename, max_age=3600)
