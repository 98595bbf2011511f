"""The web page at ``/ui/``: who the person is, CSRF, and the security headers.

A person signs in with an API key; the session cookie (signed, HttpOnly,
SameSite=Strict) then holds the key's id and a fingerprint of its stored hash, never
the key, and every request checks the key again (a revoked key ends its sessions). At
sites with single sign-on, a reverse proxy may instead name the user in a header
(``SLURM_PROXY_UI_USER_HEADER``), believed only from ``SLURM_PROXY_UI_TRUSTED_PROXIES``.
Either way the person acts through an ``ApiKey``, and the very checks of the API
(roles in ``app.access``, users in ``app.actions``/``app.tasks``) decide what they
may see and do.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from datetime import timedelta
from typing import Any, Mapping

from flask import Flask, Response, request, session
from flask.sessions import SecureCookieSessionInterface

from ..auth import ApiKey, authenticate, to_api_key
from ..schemas.fields import USERNAME

logger = logging.getLogger(__name__)

PUBLIC_UI_ENDPOINTS = {"ui.login", "ui.static"}
UI_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
          "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# Swagger UI sets style attributes and draws icons from data: URLs.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")


class CrossSiteRequest(Exception):
    """A form post without this session's CSRF token, or from another origin."""


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signer built once per secret. Flask
    opens the session on every request, API calls included, and built a new signer
    each time (about 4 % of a submit's CPU)."""

    _signer: tuple[tuple, Any] | None = None

    def get_signing_serializer(self, app: Flask):
        if not app.secret_key:
            return None
        secrets_in_use = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._signer
        if cached is None or cached[0] != secrets_in_use:
            cached = self._signer = (secrets_in_use, super().get_signing_serializer(app))
        return cached[1]


def configure_sessions(app: Flask, config: Mapping[str, Any]) -> None:
    secret = config["SLURM_PROXY_SECRET_KEY"]
    if not secret:
        # gunicorn's master makes one for all its workers (docker/gunicorn.conf.py);
        # here only a lone process (run.py, tests) gets its own.
        secret = secrets.token_urlsafe(32)
    app.secret_key = secret
    app.session_interface = SessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="slurm_proxy_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=config["SLURM_PROXY_SECURE_COOKIES"],
        PERMANENT_SESSION_LIFETIME=timedelta(hours=config["SLURM_PROXY_UI_SESSION_HOURS"]),
    )


def fingerprint(record: Mapping[str, Any]) -> str:
    return record["hash"][:16]


def sign_in(record: Mapping[str, Any]) -> None:
    session.clear()
    session.permanent = True
    session["key_id"] = record["id"]
    session["fp"] = fingerprint(record)
    session["csrf"] = secrets.token_urlsafe(32)


def sign_in_with(keys, plaintext: str) -> ApiKey:
    """Check a key typed into the sign-in form (Unauthorized if it is no good)."""
    key = authenticate(keys, f"Bearer {plaintext.strip()}")
    sign_in(keys.get(key.id))
    return key


def _proxy_identity(config: Mapping[str, Any]) -> ApiKey | None:
    header = config["SLURM_PROXY_UI_USER_HEADER"]
    if not header or not request.headers.get(header):
        return None
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return None
    if not any(address in n for n in config["SLURM_PROXY_UI_TRUSTED_PROXIES"]):
        logger.warning("ui: ignored %s from %s, which is not a trusted proxy", header, address)
        return None
    user = request.headers[header].strip()
    if not USERNAME.fullmatch(user):
        return None
    return ApiKey(f"sso:{user}", f"{user} (single sign-on)", (user,),
                  config["SLURM_PROXY_UI_PROXY_ROLES"])


def identity(keys, config: Mapping[str, Any]) -> ApiKey | None:
    """The signed-in person as an API key, or None."""
    proxied = _proxy_identity(config)
    if proxied is not None:
        return proxied
    key_id = session.get("key_id")
    if not key_id:
        return None
    record = keys.get(key_id)
    if (record is None or record.get("revoked_at")
            or not hmac.compare_digest(fingerprint(record), str(session.get("fp", "")))):
        session.clear()
        return None
    return to_api_key(record)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_same_origin_post() -> None:
    """Every POST to the page must carry the session's CSRF token and come from this
    origin (browsers send Origin and Sec-Fetch-Site on posts)."""
    if request.method != "POST":
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site and site not in ("same-origin", "none"):
        raise CrossSiteRequest(f"a {site} request")
    origin = request.headers.get("Origin")
    if origin and origin != request.host_url.rstrip("/"):
        raise CrossSiteRequest(f"a request from {origin}")
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CrossSiteRequest("a form without this session's token")


def security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    endpoint = request.endpoint or ""
    if request.blueprint == "ui":
        response.headers["Content-Security-Policy"] = UI_CSP
    elif endpoint in ("docs", "docs_static"):
        response.headers["Content-Security-Policy"] = DOCS_CSP
    else:
        return response
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.blueprint == "ui" and response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def register_ui(app: Flask, config: Mapping[str, Any]) -> None:
    from . import views

    configure_sessions(app, config)
    app.register_blueprint(views.blp)
    app.after_request(security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
