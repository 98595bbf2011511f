"""slurmrestd API v0.0.43 (Slurm 25.05-26.11).

Differences handled: job records add ``stdout_expanded``/``stderr_expanded`` with
``%j`` and friends already replaced by slurmctld; we prefer them to our own expansion
of ``standard_output``/``standard_error``. An empty ``stderr_expanded`` (Slurm 25.11+,
no separate stderr file) falls back to stdout, as in the base adapter.
"""
from .v0_0_42 import AdapterV0_0_42


class AdapterV0_0_43(AdapterV0_0_42):
    version = "0.0.43"

    def _stdout(self, job):
        return job.stdout_expanded or super()._stdout(job)

    def _stderr(self, job):
        return job.stderr_expanded or super()._stderr(job)
