"""``GET /cluster``: partitions with their nodes, CPUs and jobs, cached a few seconds."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..services import get_services
from .common import Blueprint, document_errors

blp = Blueprint("cluster", __name__, description="How busy the cluster is.")


class ClusterSchema(Schema):
    partitions = fields.List(fields.Dict(), required=True)
    api_version = fields.String(required=True)
    generated_at = fields.String(required=True)


@blp.route("/cluster", methods=["GET"])
@blp.response(200, ClusterSchema)
@document_errors(blp, 502, 503)
def cluster():
    """Per partition: nodes and CPUs idle, allocated and down; pending and running jobs."""
    services = get_services()
    return services.cluster_cache.get(services)
