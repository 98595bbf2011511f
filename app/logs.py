"""Logging set-up, called by the entry points only (never at import time).

One line per event. SLURM_PROXY_LOG_FORMAT=json writes JSON lines with ``time``,
``level``, ``logger``, ``pid``, ``message`` and, on every line about a task, its
``task_uuid`` and ``slurm_job_id`` as fields (taken from the ``task_uuid=…`` and
``slurm_job_id=…`` every such message carries, by convention).

The level and format come from the settings (``config.py``), passed in by the entry
points; this module reads no environment.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Mapping
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
_FIELDS = {"task_uuid": re.compile(r"task_uuid=([0-9a-f-]{36})"),
           "slurm_job_id": re.compile(r"slurm_job_id=(\d+)")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out = {"time": datetime.fromtimestamp(record.created, timezone.utc)
               .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
               "level": record.levelname, "logger": record.name, "pid": record.process,
               "message": message}
        for name, pattern in _FIELDS.items():
            match = pattern.search(message)
            if match:
                out[name] = int(match.group(1)) if name == "slurm_job_id" else match.group(1)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def formatter(fmt: str = "text") -> logging.Formatter:
    return JsonFormatter() if fmt.lower() == "json" else logging.Formatter(TEXT_FORMAT)


def setup_logging(config: Mapping[str, Any]) -> None:
    """SLURM_PROXY_LOG_LEVEL and SLURM_PROXY_LOG_FORMAT, for the whole process."""
    level = config["SLURM_PROXY_LOG_LEVEL"].upper()
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(config["SLURM_PROXY_LOG_FORMAT"]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def gunicorn_logconfig(config: Mapping[str, Any]) -> dict:
    """gunicorn's own loggers (errors, access lines) in the same format."""
    fmt = config["SLURM_PROXY_LOG_FORMAT"].lower()
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"main": {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "main",
                                 "stream": "ext://sys.stdout"}},
        "loggers": {"gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
                    "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }
