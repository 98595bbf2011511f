"""slurmrestd API v0.0.40 (Slurm 23.11-25.05).

Differences handled:
- ``time_limit``/``memory_per_node`` must be ``{set, number}`` structs.
- ``job_state`` a list: base state first, then flags (``["CANCELLED","COMPLETING"]``).
- times ``{set, infinite, number}``; ``exit_code`` ``{status, return_code, signal}``.
- ``GET /jobs/state?job_id=1,2`` exists and returns ``job_id`` as a *string*.
- unknown job fields are accepted with a ``warnings[]`` entry; bad token -> 511/1007.
"""
from .base import Adapter


class AdapterV0_0_40(Adapter):
    version = "0.0.40"
    has_jobs_state = True
