"""``GET /cluster``: partitions with their nodes, CPUs and jobs, cached a few seconds."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..schemas.fields import SlurmName
from ..services import get_services
from .common import Blueprint, document_errors

blp = Blueprint("cluster", __name__, description="How busy the cluster is.")


class ClusterArgs(Schema):
    cluster = SlurmName("cluster", metadata={"description": "Which cluster (default: the first)."})


class ClusterSchema(Schema):
    cluster = fields.String(required=True)
    partitions = fields.List(fields.Dict(), required=True)
    api_version = fields.String(required=True)
    generated_at = fields.String(required=True)


@blp.route("/cluster", methods=["GET"])
@blp.arguments(ClusterArgs, location="query")
@blp.response(200, ClusterSchema)
@document_errors(blp, 400, 404, 502, 503)
def cluster(args):
    """Per partition: nodes and CPUs idle, allocated and down; pending and running jobs."""
    services = get_services()
    return services.cluster_cache.get(services, args.get("cluster"))
