"""slurmrestd API v0.0.41 (Slurm 24.05-25.11).

Differences handled: the same request and job shapes as v0.0.40 for every field we
use; the submit answer carries ``job_id`` both at the top and in ``result``.
"""
from .v0_0_40 import AdapterV0_0_40


class AdapterV0_0_41(AdapterV0_0_40):
    version = "0.0.41"
