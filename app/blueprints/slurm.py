"""``/slurm/...``: slurmrestd's own answers, for operators."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..errors import SlurmJobNotFound
from ..schemas.fields import SlurmName
from ..services import get_services
from .common import Blueprint, document_errors

blp = Blueprint("slurm", __name__, url_prefix="/slurm",
                description="Operator views of slurmrestd: its answers as they come, labelled "
                            "with the API version that shaped them (`api_version`).")


class RawSchema(Schema):
    class Meta:
        unknown = "include"

    cluster = fields.String(required=True)
    api_version = fields.String(required=True)
    response = fields.Dict(required=True)


class ClusterArgs(Schema):
    cluster = SlurmName("cluster", metadata={"description": "Which cluster (default: the first)."})


def _raw(args, fetch):
    name = args.get("cluster")
    slurm = get_services().slurm.get(name)
    return {"cluster": name or get_services().slurm.default, "api_version": slurm.api_version,
            "response": fetch(slurm)}


@blp.route("/ping", methods=["GET"])
@blp.arguments(ClusterArgs, location="query")
@blp.response(200, RawSchema)
@document_errors(blp, 400, 503, 404)
def ping(args):
    """slurmrestd's ping of slurmctld."""
    return _raw(args, lambda s: s.raw("ping"))


@blp.route("/diag", methods=["GET"])
@blp.arguments(ClusterArgs, location="query")
@blp.response(200, RawSchema)
@document_errors(blp, 400, 503, 404)
def diag(args):
    """slurmctld's scheduler statistics."""
    return _raw(args, lambda s: s.raw("diag"))


@blp.route("/jobs", methods=["GET"])
@blp.arguments(ClusterArgs, location="query")
@blp.response(200, RawSchema)
@document_errors(blp, 400, 503, 404)
def jobs(args):
    """Every job slurmctld knows."""
    return _raw(args, lambda s: s.raw("jobs"))


@blp.route("/job/<int:job_id>", methods=["GET"])
@blp.arguments(ClusterArgs, location="query")
@blp.response(200, RawSchema)
@document_errors(blp, 400, 404, 503)
def job(args, job_id):
    """One job, as slurmrestd describes it."""
    if not 0 < job_id < 2**32:
        raise SlurmJobNotFound(f"No Slurm job {job_id}.")
    return _raw(args, lambda s: s.raw("job", job_id))


@blp.route("/partitions", methods=["GET"])
@blp.arguments(ClusterArgs, location="query")
@blp.response(200, RawSchema)
@document_errors(blp, 400, 503, 404)
def partitions(args):
    """The cluster's partitions."""
    return _raw(args, lambda s: s.raw("partitions"))


@blp.route("/nodes", methods=["GET"])
@blp.arguments(ClusterArgs, location="query")
@blp.response(200, RawSchema)
@document_errors(blp, 400, 503, 404)
def nodes(args):
    """The cluster's nodes."""
    return _raw(args, lambda s: s.raw("nodes"))
