"""slurmrestd API v0.0.40 (Slurm 23.11-25.05).

Differences handled:
- ``time_limit``/``memory_per_node`` must be ``{set, number}`` structs.
- ``job_state`` a list: base state first, then flags (``["CANCELLED","COMPLETING"]``).
- times ``{set, infinite, number}``; ``exit_code`` ``{status, return_code, signal}``.
- ``GET /jobs?update_time=T`` never answers 304: "no change" is HTTP 200 with
  ``jobs: []``, ``last_update`` 0 and a warning "No job changes since update_time";
  the answer's ``last_update`` is slurmctld's own time to ask from next.
- ``GET /jobs/state?job_id=1,2`` exists and returns ``job_id`` as a *string*.
- unknown job fields are accepted with a ``warnings[]`` entry; bad token -> 511/1007
  on a job GET, while ``/ping`` answers 200 with ``"pinged": "DOWN"``.
- ping ``{"hostname", "pinged": "UP", "latency", "mode"}``.
- nodes: ``state`` a list of upper-case names (base state, then flags);
  partitions: ``partition.state`` a list, ``nodes.{total, configured}``, ``cpus.total``.
"""
from typing import Any

from .base import Adapter, JobsSince

NO_CHANGE_WARNING = "No job changes since"


class AdapterV0_0_40(Adapter):
    version = "0.0.40"
    has_jobs_state = True
    ping_fields = ("hostname", "pinged", "latency", "mode")
    node_fields = ("name", "state", "cpus", "alloc_cpus", "partitions", "real_memory",
                   "alloc_memory")
    partition_fields = ("name", "partition.state", "nodes.total", "nodes.configured",
                        "cpus.total")

    def jobs_since(self, status: int, body: Any, asked: int | None,
                   keep=None) -> JobsSince:
        warnings = tuple(self.warnings(body))
        if status == 304 or (status == 200 and not (body or {}).get("jobs")
                             and any(NO_CHANGE_WARNING in w for w in warnings)):
            return JobsSince(None, asked, warnings)
        return super().jobs_since(status, body, asked, keep)
