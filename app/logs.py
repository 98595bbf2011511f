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
import time
from typing import Any, Mapping

import msgspec

TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
_FIELDS = {"task_uuid": re.compile(r"task_uuid=([0-9a-f-]{36})"),
           "slurm_job_id": re.compile(r"slurm_job_id=(\d+)")}


_encode = msgspec.json.Encoder().encode


class _Stamps:
    """A record's time as text, the date and second made once a second: a poller
    logs a line per state change, a thousand in a cycle when many jobs end, and
    ``time.strftime`` was a sixth of each line's cost."""

    def __init__(self, convert, second_format: str, tail: str):
        self.convert, self.second_format, self.tail = convert, second_format, tail
        self.last: tuple[int, str] = (-1, "")        # (second, its text): one assignment

    def __call__(self, created: float, msecs: float) -> str:
        second = int(created)
        last = self.last
        if last[0] != second:
            last = self.last = (second, time.strftime(self.second_format, self.convert(second)))
        return self.tail % (last[1], msecs)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, its ``asctime`` as ``logging.Formatter`` writes it
    (``2026-12-03 03:20:11,042``, local time)."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)
        self._stamps = _Stamps(self.converter, self.default_time_format, self.default_msec_format)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        return self._stamps(record.created, record.msecs)


class JsonFormatter(logging.Formatter):
    def __init__(self):
        super().__init__()
        self._stamps = _Stamps(time.gmtime, "%Y-%m-%dT%H:%M:%S", "%s.%03dZ")

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out = {"time": self._stamps(record.created, record.msecs),
               "level": record.levelname, "logger": record.name, "pid": record.process,
               "message": message}
        if "=" in message:
            for name, pattern in _FIELDS.items():
                match = pattern.search(message)
                if match:
                    out[name] = int(match.group(1)) if name == "slurm_job_id" else match.group(1)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        try:
            return _encode(out).decode()           # a tenth of json.dumps' cost
        except UnicodeEncodeError:                 # a lone surrogate: json escapes it
            return json.dumps(out, ensure_ascii=False)


def formatter(fmt: str = "text") -> logging.Formatter:
    return JsonFormatter() if fmt.lower() == "json" else TextFormatter()


def setup_logging(config: Mapping[str, Any]) -> None:
    """SLURM_PROXY_LOG_LEVEL and SLURM_PROXY_LOG_FORMAT, for the whole process."""
    level = config["SLURM_PROXY_LOG_LEVEL"].upper()
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(config["SLURM_PROXY_LOG_FORMAT"]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # No format here names the calling function, file or line: do not look them up
    # (a stack walk per line; Python's documented way to skip it).
    logging._srcfile = None


def gunicorn_logconfig(config: Mapping[str, Any]) -> dict:
    """gunicorn's own loggers (errors, access lines) in the same format."""
    fmt = config["SLURM_PROXY_LOG_FORMAT"].lower()
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"main": {"()": JsonFormatter if fmt == "json" else TextFormatter}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "main",
                                 "stream": "ext://sys.stdout"}},
        "loggers": {"gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
                    "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }
