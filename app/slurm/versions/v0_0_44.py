"""slurmrestd API v0.0.44 (Slurm 25.11-26.11).

Differences handled: ``job_state`` may carry the flag ``EXPEDITING`` (a failed job
held for an expedited requeue, ``--requeue=expedite``), under which the job is not
final (``states.UNFINISHED_FLAGS``). Every other shape we use is v0.0.43's, checked
against the answers of a real Slurm 26.05.3 (tests/fixtures/slurmrestd/slurm-26.05.3).
"""
from .v0_0_43 import AdapterV0_0_43


class AdapterV0_0_44(AdapterV0_0_43):
    version = "0.0.44"
