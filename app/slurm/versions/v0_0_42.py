"""slurmrestd API v0.0.42 (Slurm 24.11-25.05).

Differences handled: the submit answer has no ``result`` object, only ``job_id``;
``DELETE /job/{id}`` stays HTTP 200 and lists per-job errors in ``status[]``
(2017 unknown job, 2021 already finished); ping adds ``responding``/``primary``.
"""
from .v0_0_40 import AdapterV0_0_40


class AdapterV0_0_42(AdapterV0_0_40):
    version = "0.0.42"
