"""``POST /submit``: run a task on the cluster as its owner."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..schemas.task import SubmitSchema
from ..access import current_key
from ..services import get_services
from ..tasks import submit_task
from .common import Blueprint, document_errors

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


@blp.route("/submit", methods=["POST"], strict_slashes=False)
@blp.arguments(SubmitSchema())
@blp.response(200, SubmitResponseSchema)
@document_errors(blp, 400, 409, 413, 502, 503, 504)
def submit(body):
    """Submit a task; answers with its uuid and Slurm job id."""
    return submit_task(get_services(), body["task"], current_key())
