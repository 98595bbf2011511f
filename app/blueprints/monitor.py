"""``/monitor``: register jobs submitted elsewhere, and look tasks up."""
from __future__ import annotations

from datetime import timezone

from marshmallow import Schema, fields, validate

from .. import actions
from ..access import current_key
from ..schemas.fields import SlurmName, UserName
from ..schemas.task import MonitorSchema, TaskSchema
from ..services import get_services
from ..tasks import (lookup_by_job_id, lookup_by_uuid, record_by_job_id, record_by_uuid,
                     register_monitor)
from .common import Blueprint, document_errors
from .submit import SubmitResponseSchema

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
@document_errors(blp, 400, 404, 409, 413, 502, 503, 504)
def register(body):
    """Monitor a job submitted outside this service: a job of the task's own user only
    (403 otherwise), that Slurm knows (404 otherwise), and that no task tracks yet (409,
    naming the task when the key may see it)."""
    return {"monitor": register_monitor(get_services(), body["monitor"], current_key())}


def query_int(minimum: int, maximum: int, **kwargs) -> fields.Integer:
    """An integer in a query string (which arrives as text)."""
    return fields.Integer(validate=validate.Range(min=minimum, max=maximum), **kwargs)


class WaitArgs(Schema):
    wait = query_int(0, 3600, metadata={"description": "Seconds to wait for a final state "
                                                       "(capped by SLURM_PROXY_MAX_WAIT)."})


CLUSTER_ARG = dict(metadata={"description": "The job's cluster (default: the first)."})


class JobIdArgs(WaitArgs):
    cluster = SlurmName("cluster", **CLUSTER_ARG)


class ClusterArgs(Schema):
    cluster = SlurmName("cluster", **CLUSTER_ARG)


def _maybe_wait(find_record, lookup, args):
    """With ``?wait=N``: the stored record once final (no slurmrestd request while
    waiting, see ``actions.wait_for_task``); else the record with the live job."""
    if args.get("wait"):
        return actions.wait_for_task(get_services(), find_record(), current_key(), args["wait"])
    return lookup()


@blp.route("/monitor/task_uuid/<string:task_uuid>", methods=["GET"])
@blp.arguments(WaitArgs, location="query")
@blp.response(200, LookupSchema)
@document_errors(blp, 400, 404, 503)
def by_uuid(args, task_uuid):
    """The stored record of a task, with its live Slurm job; ``?wait=N`` answers as
    soon as the task is final, or after N seconds."""
    services = get_services()
    return _maybe_wait(lambda: record_by_uuid(services, task_uuid),
                       lambda: lookup_by_uuid(services, task_uuid, current_key()), args)


@blp.route("/monitor/slurm_job_id/<int:slurm_job_id>", methods=["GET"])
@blp.arguments(JobIdArgs, location="query")
@blp.response(200, LookupSchema)
@document_errors(blp, 400, 404, 503)
def by_job_id(args, slurm_job_id):
    """The stored record of the task with this Slurm job id (on ``cluster``), among the
    tasks of the users this key acts for (the active one, else the newest), with its
    live job."""
    services = get_services()
    return _maybe_wait(lambda: record_by_job_id(services, slurm_job_id, current_key(),
                                                args.get("cluster")),
                       lambda: lookup_by_job_id(services, slurm_job_id, current_key(),
                                                args.get("cluster")), args)


class ListArgs(Schema):
    username = UserName()
    state = fields.String(validate=validate.Regexp(r"^[A-Z_]{1,32}$"),
                          metadata={"pattern": r"^[A-Z_]{1,32}$"})
    name = fields.String(validate=validate.Length(max=100))
    since = fields.AwareDateTime(default_timezone=timezone.utc)
    until = fields.AwareDateTime(default_timezone=timezone.utc)
    limit = query_int(1, 500, load_default=50)
    cursor = fields.String(validate=validate.Regexp(actions.CURSOR),
                           metadata={"description": "next_cursor of the previous page"})


class TaskListSchema(Schema):
    tasks = fields.List(fields.Dict(), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


@blp.route("/monitor", methods=["GET"], strict_slashes=False)
@blp.arguments(ListArgs, location="query")
@blp.response(200, TaskListSchema)
@document_errors(blp, 400, 503)
def list_tasks(args):
    """The tasks this key may see, newest first, filtered; page with ``cursor``."""
    return actions.list_tasks(get_services(), current_key(), args)


class CancelSchema(Schema):
    uuid = fields.String(required=True)
    slurm_job_id = fields.Integer(required=True)
    slurm_job_state = fields.String(required=True)
    cancel_requested = fields.Boolean(required=True)


@blp.route("/monitor/task_uuid/<string:task_uuid>", methods=["DELETE"])
@blp.response(202, CancelSchema)
@document_errors(blp, 404, 409, 502, 503)
def cancel_by_uuid(task_uuid):
    """Cancel the task's Slurm job; the poller records CANCELLED and notifies."""
    return actions.cancel_by_uuid(get_services(), task_uuid, current_key())


@blp.route("/monitor/slurm_job_id/<int:slurm_job_id>", methods=["DELETE"])
@blp.arguments(ClusterArgs, location="query")
@blp.response(202, CancelSchema)
@document_errors(blp, 400, 404, 409, 502, 503)
def cancel_by_job_id(args, slurm_job_id):
    """Cancel the Slurm job of the task with this job id (on ``cluster``)."""
    return actions.cancel_by_job_id(get_services(), slurm_job_id, current_key(), args.get("cluster"))


class ResubmitSchema(Schema):
    task = fields.Nested(TaskSchema(partial=True), load_default=dict, metadata={
        "description": "Fields to change; the rest comes from the original task."})


@blp.route("/monitor/task_uuid/<string:task_uuid>/resubmit", methods=["POST"])
@blp.arguments(ResubmitSchema())
@blp.response(200, SubmitResponseSchema)
@document_errors(blp, 400, 404, 409, 413, 502, 503, 504)
def resubmit(body, task_uuid):
    """Submit a task again, with changes; a new uuid, linked to the old one."""
    return actions.resubmit_task(get_services(), task_uuid, body["task"], current_key())


class OutputArgs(Schema):
    stream = fields.String(load_default="stdout", validate=validate.OneOf(("stdout", "stderr")))
    tail = query_int(1, 10_000, load_default=100)


class OutputSchema(Schema):
    uuid = fields.String(required=True)
    stream = fields.String(required=True)
    path = fields.String(required=True)
    size = fields.Integer(required=True)
    lines = fields.List(fields.String(), required=True)
    truncated = fields.Boolean(required=True)


@blp.route("/monitor/task_uuid/<string:task_uuid>/output", methods=["GET"])
@blp.arguments(OutputArgs, location="query")
@blp.response(200, OutputSchema)
@document_errors(blp, 400, 404, 501)
def output(args, task_uuid):
    """The last lines of the task's stdout or stderr, where the server may read them."""
    return actions.read_output(get_services(), task_uuid, current_key(), args["stream"],
                               args["tail"])
