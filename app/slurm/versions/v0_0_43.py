"""slurmrestd API v0.0.43 (Slurm 25.05).

Differences handled: job records add ``stdout_expanded``/``stderr_expanded`` with
``%j`` and friends already replaced; we prefer them to ``standard_output``.
"""
from dataclasses import replace

from .v0_0_42 import AdapterV0_0_42


class AdapterV0_0_43(AdapterV0_0_42):
    version = "0.0.43"

    def _stdout(self, job):
        return job.get("stdout_expanded") or job.get("standard_output")

    def parse_job(self, job):
        info = super().parse_job(job)
        if job.get("stderr_expanded"):
            info = replace(info, standard_error=job["stderr_expanded"])
        return info
