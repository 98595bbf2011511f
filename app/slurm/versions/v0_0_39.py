"""slurmrestd API v0.0.39 (Slurm 23.02-24.05).

Differences handled:
- submit: ``job.script``; ``job.environment`` a list of ``"K=V"``; numbers accepted
  as ``{"set": true, "number": N}`` structs (sent that way).
- submit answer: ``job_id`` and ``result.job_id``; ``warnings[]`` beside ``errors[]``.
- ``job_state`` still one string; ``exit_code`` a verbose object.
"""
from .base import Adapter


class AdapterV0_0_39(Adapter):
    version = "0.0.39"
