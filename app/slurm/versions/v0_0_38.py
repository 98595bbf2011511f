"""slurmrestd API v0.0.38 (Slurm 21.08-23.11; the newest Debian 12's 22.05 serves).

Differences handled:
- submit: ``script`` at the top level beside ``job``; ``job.environment`` an object
  (``{"PATH": "..."}``); ``time_limit`` and ``memory_per_node`` plain integers.
- unknown ``job`` keys are rejected (400 "Unknown key"), so we send only known ones.
- ``job_state`` one string; ``exit_code`` the raw wait status (exit 3 -> 768).
- times are plain epoch integers; a bad token gives HTTP 500 with error 5005.
"""
from .base import Adapter


class AdapterV0_0_38(Adapter):
    version = "0.0.38"
    script_in_job = False
    environment_as_list = False
    numbers_as_struct = False
