"""Who may call what: the API-key check on every route but health, the role each
route needs, per-key rate limits (429 with Retry-After), and the docs page.

Per-task authorization (may this key act for this task's user?) is checked where the
task is known, in ``app.tasks``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from flask import Flask, Response, g, request, send_from_directory

from .auth import ANONYMOUS, Forbidden, authenticate

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


def register_access_control(app: Flask, keys, config: Mapping[str, Any]) -> None:
    public = set(PUBLIC_ENDPOINTS) | (DOCS_ENDPOINTS if config["SLURM_PROXY_PUBLIC_DOCS"] else set())
    enabled = config["SLURM_PROXY_AUTH"]
    if not enabled:
        logger.warning("*** SLURM_PROXY_AUTH is off: anyone who can reach %s may run "
                       "anything as any user. Loopback only. ***", config["SLURM_PROXY_HOST"])

    @app.before_request
    def _check_key():
        if request.endpoint in public:
            return None
        key = authenticate(keys, request.headers.get("Authorization")) if enabled else ANONYMOUS
        g.api_key = key
        role = required_role(request.endpoint)
        if role is not None and not key.has_role(role):
            raise Forbidden(f"API key {key.name!r} lacks the {role!r} role.")
        return None


def current_key():
    return g.get("api_key", ANONYMOUS)


def register_rate_limits(app: Flask, config: Mapping[str, Any]):
    """Per-key limits (per client address without a key), shared between workers when
    MongoDB is configured."""
    from flask_limiter import Limiter

    storage = (config["SLURM_PROXY_RATE_LIMIT_STORAGE"] or config["MONGODB_URI"] or "memory://")

    def key_func() -> str:
        key = g.get("api_key")
        return f"key:{key.id}" if key is not None else f"addr:{request.remote_addr}"

    limiter = Limiter(key_func=key_func, app=app, storage_uri=storage,
                      default_limits=[config["SLURM_PROXY_RATE_LIMIT"]] if config["SLURM_PROXY_RATE_LIMIT"] else [],
                      headers_enabled=True, strategy="moving-window",
                      default_limits_exempt_when=lambda: request.endpoint in PUBLIC_ENDPOINTS)
    return limiter


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
