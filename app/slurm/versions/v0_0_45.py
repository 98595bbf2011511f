"""slurmrestd API v0.0.45 (Slurm 26.05-; the newest release serves it).

Differences handled: ``ping`` drops ``pinged`` and ``mode`` and adds ``status``, a
text that is "No error" while slurmctld answers and Slurm's reason otherwise (a
refused token: "Protocol authentication error", with ``responding`` false).
"""
from typing import Any

from .v0_0_44 import AdapterV0_0_44


class AdapterV0_0_45(AdapterV0_0_44):
    version = "0.0.45"
    ping_fields = ("hostname", "responding", "latency", "primary", "status")

    @staticmethod
    def _ping_status(ping: dict[str, Any]) -> str | None:
        return None if ping.get("responding") else (ping.get("status") or "not responding")
