"""What every notification says: the facts a person wants, and the user's own words."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping


def _iso(value) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds").replace("+00:00", "Z")
    return value


def build_event(record: Mapping[str, Any], delivery: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON event (webhook and RabbitMQ bodies; the facts in every message)."""
    task = record["task"]
    outputs = record.get("outputs") or {}
    params = (task.get("notification") or {}).get("params", {}).get(delivery["method"], {})
    return {
        "event": "task.state",
        "delivery_id": delivery["id"],
        "state": delivery["state"],
        "task": {"uuid": task["uuid"], "name": task.get("name"),
                 "username": task.get("username")},
        "slurm_job_id": record.get("slurm_job_id"),
        "exit_code": record.get("exit_code"),
        "signal": record.get("signal"),
        "state_reason": record.get("state_reason"),
        "submitted_at": _iso(record.get("created_at")),
        "started_at": _iso(record.get("start_time")),
        "ended_at": _iso(record.get("end_time")),
        "elapsed": record.get("elapsed"),
        "stdout": outputs.get("stdout"),
        "stderr": outputs.get("stderr"),
        "occurred_at": _iso(delivery.get("created_at")),
        "message": params.get("msg") or params.get("body"),
    }


def elapsed_text(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def task_label(event: Mapping[str, Any]) -> str:
    """What to call the task: its name, or for a job registered with POST /monitor
    (which has none) its Slurm job."""
    name = event["task"].get("name")
    if name:
        return name
    return f"job {event['slurm_job_id']}" if event.get("slurm_job_id") is not None else "task"


def subject(event: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    if params.get("subject"):
        return params["subject"]
    if not event["task"].get("name") and event.get("slurm_job_id") is not None:
        return f"[slurm-proxy] job {event['slurm_job_id']} {event['state']}"
    return f"[slurm-proxy] {task_label(event)} {event['state']}" + (
        f" (job {event['slurm_job_id']})" if event.get("slurm_job_id") is not None else "")


def facts_text(event: Mapping[str, Any]) -> str:
    exit_text = "-" if event["exit_code"] is None else str(event["exit_code"])
    if event["signal"]:
        exit_text += f" (signal {event['signal']})"
    rows = [
        ("Task", f"{task_label(event)} ({event['task']['uuid']})"),
        ("User", event["task"]["username"]),
        ("Slurm job", event["slurm_job_id"]),
        ("State", event["state"] + (f" ({event['state_reason']})"
                                    if event.get("state_reason") not in (None, "None") else "")),
        ("Exit code", exit_text),
        ("Submitted", event["submitted_at"]),
        ("Started", event["started_at"]),
        ("Ended", event["ended_at"]),
        ("Elapsed", elapsed_text(event["elapsed"])),
        ("Output", event["stdout"]),
        ("Error", event["stderr"]),
    ]
    return "\n".join(f"{label + ':':11s}{'-' if value is None else value}" for label, value in rows)


def text(event: Mapping[str, Any]) -> str:
    """Plain text: the user's message first (the reference ignored it), then the facts."""
    parts = [event["message"]] if event.get("message") else []
    parts.append(facts_text(event))
    parts.append(f"-- \nslurm-proxy delivery {event['delivery_id']}")
    return "\n\n".join(parts) + "\n"
