"""``/monitor``: register jobs submitted elsewhere, and look tasks up."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..schemas.task import MonitorSchema
from ..access import current_key
from ..access import current_key
from ..access import current_key
from ..services import get_services
from ..tasks import lookup_by_job_id, lookup_by_uuid, register_monitor
from .common import Blueprint, document_errors

blp = Blueprint("monitor", __name__, description="Monitor tasks and their Slurm jobs.")


class MonitorRecordSchema(Schema):
    monitor = fields.Dict(required=True)


class LookupSchema(Schema):
    monitor = fields.Dict(required=True, metadata={"description": "The stored record."})
    slurm = fields.Dict(allow_none=True, required=True,
                        metadata={"description": "The live job from slurmrestd, or null."})
    slurm_error = fields.Dict(metadata={"description": "Why `slurm` is null."})


@blp.route("/monitor", methods=["POST"], strict_slashes=False)
@blp.arguments(MonitorSchema())
@blp.response(200, MonitorRecordSchema)
@document_errors(blp, 400, 409, 413, 503)
def register(body):
    """Monitor a job submitted outside this service."""
    return {"monitor": register_monitor(get_services(), body["monitor"], current_key())}


@blp.route("/monitor/task_uuid/<string:task_uuid>", methods=["GET"])
@blp.response(200, LookupSchema)
@document_errors(blp, 404, 503)
def by_uuid(task_uuid):
    """The stored record of a task, with its live Slurm job."""
    return lookup_by_uuid(get_services(), task_uuid, current_key())


@blp.route("/monitor/slurm_job_id/<int:slurm_job_id>", methods=["GET"])
@blp.response(200, LookupSchema)
@document_errors(blp, 404, 503)
def by_job_id(slurm_job_id):
    """The stored record of the task with this Slurm job id, with its live job."""
    return lookup_by_job_id(get_services(), slurm_job_id, current_key())
