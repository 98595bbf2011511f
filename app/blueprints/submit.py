"""``POST /submit``: run a task on the cluster as its owner.

Two ways in, one behaviour. The Flask view below is the documented route, and answers
every request that is not a plain success. ``SubmitPath`` sits in front of Flask (a WSGI
layer) and takes the common case itself: a JSON body within the size limit, a valid
key with the submit role, a body the schema accepts. It calls the same ``submit_task``,
renders errors with the same ``describe_error``, dumps the same response schema and
counts with the same per-key limit; at the first thing it does not take (no key, a
refused key, a bad body, a query string...) it hands the request, body included, to
Flask unchanged, which answers as it always did. A submit through Flask
cost about twice the worker CPU of ``submit_task`` itself (request context, hooks,
webargs, flask-smorest's decorators, the response object: ``bench/submit.py``).
"""
from __future__ import annotations

import io
import json
import logging
import time

from marshmallow import Schema, ValidationError, fields
from werkzeug.http import HTTP_STATUS_CODES

from ..access import ENDPOINT_ROLES, current_key
from ..auth import ANONYMOUS, authenticate
from ..errors import UNEXPECTED, SlurmProxyError, describe_error
from ..schemas.task import SubmitSchema
from ..services import get_services
from ..tasks import submit_task
from .common import Blueprint, document_errors
from .health import count_submit

logger = logging.getLogger(__name__)
blp = Blueprint("submit", __name__, description="Submit tasks to Slurm.")


class SubmitResponseSchema(Schema):
    uuid = fields.String(required=True)
    slurm_job_id = fields.Integer(required=True)
    slurm_job_state = fields.String()
    name = fields.String()
    username = fields.String()
    cluster = fields.String(metadata={"description": "The cluster the job went to."})
    links = fields.Dict(keys=fields.String(), values=fields.String())
    resubmitted_from = fields.String(metadata={"description": "The task this one repeats."})


SUBMIT_SCHEMA = SubmitSchema()
RESPONSE_SCHEMA = SubmitResponseSchema()
ENDPOINT = "submit.submit"


@blp.route("/submit", methods=["POST"], strict_slashes=False)
@blp.arguments(SUBMIT_SCHEMA)
@blp.response(200, RESPONSE_SCHEMA)
@document_errors(blp, 400, 409, 413, 502, 503, 504)
def submit(body):
    """Submit a task; answers with its uuid and Slurm job id."""
    return submit_task(get_services(), body["task"], current_key())


class SubmitPath:
    """``POST /submit`` as a WSGI layer in front of the Flask app ``app`` (see the
    module's docstring); ``key_limit`` is the app's ``access.KeyLimit``, or None."""

    PATHS = ("/submit", "/submit/")

    def __init__(self, app, services, key_limit=None):
        self.flask = app.wsgi_app
        self.services = services
        self.key_limit = key_limit
        self.keys = services.keys
        self.auth = services.config["SLURM_PROXY_AUTH"]
        self.role = ENDPOINT_ROLES[ENDPOINT]
        self.max_body = app.config["MAX_CONTENT_LENGTH"]
        self.dumps = app.json.dumps

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") not in self.PATHS or environ.get("REQUEST_METHOD") != "POST" \
                or environ.get("QUERY_STRING"):
            return self.flask(environ, start_response)
        started = time.monotonic()
        key = self._key(environ.get("HTTP_AUTHORIZATION"))
        body = self._body(environ) if key is not None else None
        if body is None:
            return self.flask(environ, start_response)
        try:
            task = SUBMIT_SCHEMA.load(body)["task"]
        except Exception:  # noqa: BLE001 - Flask names the bad fields (or fails as ever)
            return self.flask(environ, start_response)
        limit_headers = ()
        try:
            if self.key_limit is not None:       # as Flask would, before the view
                limit_headers = self.key_limit.hit(f"key:{key.id}", ENDPOINT)
            status, answer, headers = 200, RESPONSE_SCHEMA.dump(
                submit_task(self.services, task, key)), {}
        except (SlurmProxyError, ValidationError) as exc:
            answer, headers = describe_error(exc)
            status = answer["status"]
        except Exception:  # noqa: BLE001 - as Flask's handler: logged, a JSON 500
            logger.exception("unhandled error")
            status, answer, headers = 500, UNEXPECTED, {}
        count_submit(status, started)
        return self._respond(start_response, status, answer, headers, limit_headers)

    def _key(self, header: str | None):
        """The caller's key when it may submit; None for Flask to answer (401, 403, or
        503 when the key store cannot be read)."""
        if not self.auth:
            key = ANONYMOUS
        elif not header:
            return None
        else:
            try:
                key = authenticate(self.keys, header)
            except SlurmProxyError:                        # Unauthorized, StoreUnavailable
                return None
        return key if key.has_role(self.role) else None

    def _body(self, environ):
        """The JSON body; None (after putting back what was read) for Flask to answer
        (too large, not sent with a length, not JSON)."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if length <= 0 or (self.max_body is not None and length > self.max_body):
            return None
        data = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(data)           # for Flask, if it answers
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError:                                 # incl. UnicodeDecodeError
            return None

    def _respond(self, start_response, status: int, answer, headers, limit_headers):
        """Headers in Flask's order: the response's own, then the after-request hooks'."""
        payload = (self.dumps(answer, separators=(",", ":")) + "\n").encode()
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown').upper()}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
            *headers.items(), ("X-Content-Type-Options", "nosniff"), *limit_headers])
        return [payload]
