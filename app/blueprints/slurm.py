"""``/slurm/...``: slurmrestd's own answers, for operators."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..errors import SlurmJobNotFound
from ..services import get_services
from .common import Blueprint, document_errors

blp = Blueprint("slurm", __name__, url_prefix="/slurm",
                description="Operator views of slurmrestd (its answers as they come).")


class RawSchema(Schema):
    class Meta:
        unknown = "include"

    api_version = fields.String(required=True)
    response = fields.Dict(required=True)


def _raw(fetch):
    slurm = get_services().slurm
    return {"api_version": slurm.api_version, "response": fetch(slurm)}


@blp.route("/ping", methods=["GET"])
@blp.response(200, RawSchema)
@document_errors(blp, 503)
def ping():
    """slurmrestd's ping of slurmctld."""
    return _raw(lambda s: s.ping())


@blp.route("/diag", methods=["GET"])
@blp.response(200, RawSchema)
@document_errors(blp, 503)
def diag():
    """slurmctld's scheduler statistics."""
    return _raw(lambda s: s.diag())


@blp.route("/jobs", methods=["GET"])
@blp.response(200, RawSchema)
@document_errors(blp, 503)
def jobs():
    """Every job slurmctld knows."""
    return _raw(lambda s: s.jobs_raw())


@blp.route("/job/<int:job_id>", methods=["GET"])
@blp.response(200, RawSchema)
@document_errors(blp, 404, 503)
def job(job_id):
    """One job, as slurmrestd describes it."""
    if not 0 < job_id < 2**32:
        raise SlurmJobNotFound(f"No Slurm job {job_id}.")
    return _raw(lambda s: s.job_raw(job_id))


@blp.route("/partitions", methods=["GET"])
@blp.response(200, RawSchema)
@document_errors(blp, 503)
def partitions():
    """The cluster's partitions."""
    return _raw(lambda s: s.partitions())


@blp.route("/nodes", methods=["GET"])
@blp.response(200, RawSchema)
@document_errors(blp, 503)
def nodes():
    """The cluster's nodes."""
    return _raw(lambda s: s.nodes())
