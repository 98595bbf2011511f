"""The error tree and the one JSON shape every error response takes.

Every error body is ``{"code", "status", "message", "errors"}`` (flask-smorest's
shape): ``code`` a short machine word, ``status`` the HTTP status, ``message`` a
sentence for a person, ``errors`` details (field names for a bad request, slurmrestd's
``errors[]`` for a rejected job).
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class SlurmProxyError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, errors=None, headers=None):
        super().__init__(message)
        self.message = message
        self.errors = errors if errors is not None else {}
        self.headers = headers or {}


class InvalidRequest(SlurmProxyError):
    status = 400
    code = "invalid_request"


class UnknownTask(InvalidRequest):
    code = "unknown_task"


class TaskNotFound(SlurmProxyError):
    status = 404
    code = "not_found"


class DuplicateTask(SlurmProxyError):
    status = 409
    code = "duplicate_uuid"


class JobAlreadyTracked(SlurmProxyError):
    """An active task already holds this Slurm job id on this cluster."""

    status = 409
    code = "job_already_tracked"


class TooManyRequests(SlurmProxyError):
    status = 429
    code = "rate_limited"


class StoreUnavailable(SlurmProxyError):
    status = 503
    code = "store_unavailable"


class SlurmError(SlurmProxyError):
    """Anything that went wrong talking to slurmrestd."""

    status = 502
    code = "slurm_error"


class SlurmUnavailable(SlurmError):
    """slurmrestd could not be reached (connection refused, DNS, TLS)."""

    status = 503
    code = "slurm_unavailable"


class SlurmTimeout(SlurmError):
    """slurmrestd did not answer in time; a request may or may not have taken effect."""

    status = 504
    code = "slurm_timeout"


class SlurmAuthError(SlurmError):
    """slurmrestd or slurmctld refused the service's credentials."""

    status = 502
    code = "slurm_auth_failed"


class SlurmRejected(SlurmError):
    """slurmrestd answered, and said no; ``errors`` carries its ``errors[]``."""

    status = 502
    code = "slurm_rejected"


class SlurmVersionUnserved(SlurmError):
    """slurmrestd does not serve the API version the service speaks to it."""
    status = 502
    code = "slurm_api_version"


class SlurmJobNotFound(SlurmError):
    status = 404
    code = "slurm_job_not_found"


class SlurmJobFinished(SlurmError):
    status = 409
    code = "slurm_job_finished"


class ConfigError(SlurmProxyError):
    """Bad or missing configuration; raised at start-up only."""

    code = "config"


class NotificationError(SlurmProxyError):
    """A notification could not be delivered; never reaches HTTP."""

    code = "notification_failed"


def flatten_messages(messages, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into ``{"task.slurm.mem": [...]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                name = prefix or "body"
            flat.update(flatten_messages(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        flat.setdefault(prefix or "body", []).extend(messages)
    elif isinstance(messages, list):
        for item in messages:
            flat.update(flatten_messages(item, prefix))
    else:
        flat.setdefault(prefix or "body", []).append(str(messages))
    return flat


def describe_fields(flat: dict[str, list[str]]) -> str:
    parts = [f"{name}: {' '.join(msgs)}" for name, msgs in sorted(flat.items())]
    return "Invalid request: " + "; ".join(parts)


def invalid(errors: dict[str, list[str]]) -> InvalidRequest:
    """The 400 for bad input: ``errors`` maps each bad field to what is wrong with it,
    and the message names them all (``Invalid request: task.cwd: ...; task.uuid: ...``).
    Every "Invalid request" answer is built here or by the handlers below."""
    return InvalidRequest(describe_fields(errors), errors=errors)


def error_response(status: int, code: str, message: str, errors=None, headers=None):
    body = {"code": code, "status": status, "message": message, "errors": errors or {}}
    return jsonify(body), status, headers or {}


def describe_error(exc: SlurmProxyError | ValidationError) -> tuple[dict, dict[str, str]]:
    """The error body and extra headers for one of ours or a schema's refusal, as every
    path answers them (Flask's handlers below, and ``POST /submit``'s WSGI path)."""
    if isinstance(exc, ValidationError):
        flat = flatten_messages(exc.messages)
        return ({"code": "invalid_request", "status": 400, "message": describe_fields(flat),
                 "errors": flat}, {})
    if exc.status >= 500:
        logger.warning("%s: %s", exc.code, exc.message)
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="slurm-proxy"'
    return ({"code": exc.code, "status": exc.status, "message": exc.message,
             "errors": exc.errors or {}}, headers)


UNEXPECTED = {"code": "internal", "status": 500, "message": "Internal error; it has been logged.",
              "errors": {}}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(SlurmProxyError)
    @app.errorhandler(ValidationError)
    def _known_error(exc: SlurmProxyError | ValidationError):
        body, headers = describe_error(exc)
        return jsonify(body), body["status"], headers

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        # Keep what the exception says in headers (Allow on 405, Retry-After on 429).
        headers = {k: v for k, v in exc.get_headers()
                   if k.lower() not in ("content-type", "content-length")}
        data = getattr(exc, "data", None) or {}
        messages = data.get("messages")
        if messages:
            # webargs (through flask-smorest) puts schema errors under the location.
            if isinstance(messages, dict) and set(messages) <= {"json", "query", "path", "form"}:
                unwrapped: dict = {}
                for loc in messages.values():
                    unwrapped.update(loc if isinstance(loc, dict) else {"body": loc})
                messages = unwrapped
            flat = flatten_messages(messages)
            return error_response(status, "invalid_request", describe_fields(flat), flat, headers)
        code = {
            400: "bad_request", 404: "not_found", 405: "method_not_allowed",
            413: "body_too_large", 415: "unsupported_media_type", 429: "rate_limited",
        }.get(status, "http_error")
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"Request body is larger than the limit of {limit} bytes."
        if status == 429:
            message = f"Too many requests ({exc.description}); retry after the Retry-After seconds."
        return error_response(status, code, message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        logger.exception("unhandled error")
        return jsonify(UNEXPECTED), 500
