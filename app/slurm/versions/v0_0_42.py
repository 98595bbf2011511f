"""slurmrestd API v0.0.42 (Slurm 24.11-26.05).

Differences handled:
- the submit answer has no ``result`` object, only ``job_id``.
- ``DELETE /job/{id}`` stays HTTP 200 and lists per-job errors in ``status[]``
  (``{"error": {"code": 2017|2021, "string", "message"}}``: unknown job, already
  finished), which count as errors.
- ping adds ``responding`` (a boolean) and ``primary``; we read those.
"""
from typing import Any

from .base import PingInfo, number
from .v0_0_40 import AdapterV0_0_40


class AdapterV0_0_42(AdapterV0_0_40):
    version = "0.0.42"
    ping_fields = ("hostname", "responding", "latency", "primary", "pinged")

    def errors(self, body: Any) -> list[dict[str, Any]]:
        out = super().errors(body)
        for item in (body.get("status") or []) if isinstance(body, dict) else []:
            err = item.get("error") if isinstance(item, dict) else None
            if isinstance(err, dict) and err.get("code"):
                out.append({"code": err["code"], "error": err.get("string") or "",
                            "description": err.get("message") or ""})
        return out

    def parse_ping(self, body: dict[str, Any]) -> list[PingInfo]:
        return [PingInfo(hostname=p.get("hostname") or "", up=p.get("responding") is True,
                         primary=p.get("primary"), latency=number(p.get("latency")),
                         status=self._ping_status(p))
                for p in body.get("pings") or []]

    @staticmethod
    def _ping_status(ping: dict[str, Any]) -> str | None:
        return None if ping.get("responding") else (ping.get("pinged") or "not responding")
