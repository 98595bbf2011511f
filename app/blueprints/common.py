"""What the blueprints share: a parser that answers 400 (the reference contract's code
for a bad request, not webargs' 422) and reads a JSON body whatever its Content-Type,
so ``wget --post-data`` and ``curl -d`` one-liners work without a header."""
from __future__ import annotations

import flask_smorest
from marshmallow import Schema, fields
from webargs import core
from webargs.flaskparser import FlaskParser


class JSONBodyParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400
    # Unknown query parameters are refused like unknown body fields (the schemas'
    # own RAISE), not silently dropped.
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
                                   "query": None, "querystring": None}

    def _raw_load_json(self, req):
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        return core.parse_json(data)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JSONBodyParser()


class ProxyErrorSchema(Schema):
    code = fields.String(required=True)
    status = fields.Integer(required=True)
    message = fields.String(required=True)
    errors = fields.Dict()


ERROR_RESPONSES = {
    400: "Invalid request; `errors` names each bad field.",
    401: "No API key, or an invalid or revoked one.",
    403: "The key may not act for this user, or lacks the role.",
    429: "Too many requests for this key (or, without a valid key, from this address); "
         "see Retry-After.",
    404: "No such task (or, registering a job, no such Slurm job).",
    409: "A task with this uuid exists already, the job is tracked by another task, or the "
         "task has already finished.",
    413: "Request body too large.",
    502: "slurmrestd refused the request; `errors.slurm_errors` says why.",
    503: "slurmrestd or MongoDB not reachable; the message says which.",
    504: "slurmrestd did not answer in time.",
    501: "This server does not offer it (e.g. reading output files).",
}


def document_errors(blp: Blueprint, *codes: int):
    """Declare the JSON error responses of a view in the OpenAPI document (with the
    401/403/429 every authenticated route can answer)."""
    def decorator(func):
        for code in sorted(set(codes) | {401, 403, 429}):
            func = blp.alt_response(code, description=ERROR_RESPONSES[code],
                                    schema=ProxyErrorSchema)(func)
        return func
    return decorator
