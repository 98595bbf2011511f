"""What every slurmrestd API version has in common, and the dataclass we speak.

An adapter turns our ``JobSubmission`` into one version's submit body and that
version's job JSON into our ``JobInfo``. Reading is tolerant (a number may be an int
or a ``{set, infinite, number}`` struct; ``job_state`` a string or a list), so the
version modules only declare where their *requests* differ.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from ...batch import JobSubmission
from ..states import is_terminal, normalize_state


@dataclass(frozen=True)
class JobInfo:
    job_id: int
    name: str
    state: str
    state_flags: tuple[str, ...]
    state_reason: str | None
    exit_code: int | None
    signal: int | None
    user_name: str | None
    partition: str | None
    nodes: str | None
    submit_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    time_limit: int | None          # minutes; None = unlimited or unknown
    standard_output: str | None
    standard_error: str | None
    current_working_directory: str | None
    comment: str | None
    array_job_id: int | None = None     # the array's job id, for an element of an array
    array_task_id: int | None = None

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.state, self.state_flags)

    @property
    def elapsed(self) -> int | None:
        if self.start_time is None:
            return None
        end = self.end_time or datetime.now(timezone.utc)
        return max(0, int((end - self.start_time).total_seconds()))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state_flags"] = list(self.state_flags)
        data["is_terminal"] = self.is_terminal
        data["elapsed"] = self.elapsed
        return data


def number(value) -> int | None:
    """An int, or the number in a ``{set, infinite, number}`` struct when set."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, dict):
        if value.get("infinite") or not value.get("set", True):
            return None
        return number(value.get("number"))
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def timestamp(value) -> datetime | None:
    seconds = number(value)
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def decode_exit(value) -> tuple[int | None, int | None]:
    """(exit code, signal) from any version's ``exit_code``.

    v0.0.38: the raw wait status (exit 3 -> 768; killed by SIGTERM -> 15).
    v0.0.39+: ``{status, return_code, signal: {id|signal_id, name}}``.
    """
    if value is None or isinstance(value, bool):
        return None, None
    if isinstance(value, int):
        signal = value & 0x7F
        return (None, signal) if signal else (value >> 8, None)
    if isinstance(value, dict):
        rc = number(value.get("return_code"))
        sig_obj = value.get("signal") or {}
        sig = number(sig_obj.get("id", sig_obj.get("signal_id"))) if isinstance(sig_obj, dict) else None
        status = value.get("status") or []
        if "SIGNALED" in status and sig:
            return None, sig
        return rc, sig or None
    return None, None


class Adapter:
    """Requests and answers of one slurmrestd API version."""

    version = "base"
    script_in_job = True          # job.script (v0.0.39+) or top-level "script" (v0.0.38)
    environment_as_list = True    # ["K=V"] (v0.0.39+) or {"K": "V"} (v0.0.38)
    numbers_as_struct = True      # {"set": true, "number": N} (v0.0.39+) or plain ints
    has_jobs_state = False        # GET /jobs/state?job_id=... (v0.0.40+)

    @property
    def prefix(self) -> str:
        return f"/slurm/v{self.version}"

    def _num(self, value: int):
        return {"set": True, "infinite": False, "number": value} if self.numbers_as_struct else value

    def submit_body(self, sub: JobSubmission) -> dict[str, Any]:
        env = sub.environment
        job: dict[str, Any] = {
            "name": sub.name,
            "current_working_directory": sub.cwd,
            "environment": [f"{k}={v}" for k, v in env.items()] if self.environment_as_list else dict(env),
            "comment": sub.comment,
            "standard_output": sub.standard_output,
            "standard_error": sub.standard_error,
        }
        if sub.partition:
            job["partition"] = sub.partition
        if sub.time_limit is not None:
            job["time_limit"] = self._num(sub.time_limit)
        if sub.memory_per_node is not None:
            job["memory_per_node"] = self._num(sub.memory_per_node)
        if sub.nodes is not None:
            job["nodes"] = str(sub.nodes)
        if sub.tasks_per_node is not None:
            job["tasks_per_node"] = sub.tasks_per_node
        if sub.cpus_per_task is not None:
            job["cpus_per_task"] = sub.cpus_per_task
        for name in ("account", "qos", "array", "dependency"):
            if getattr(sub, name):
                job[name] = getattr(sub, name)
        job.update(sub.extra)
        if self.script_in_job:
            job["script"] = sub.script
            return {"job": job}
        return {"script": sub.script, "job": job}

    def parse_submit(self, body: dict[str, Any]) -> int | None:
        job_id = number(body.get("job_id"))
        if job_id is None and isinstance(body.get("result"), dict):
            job_id = number(body["result"].get("job_id"))
        return job_id

    def parse_job(self, job: dict[str, Any]) -> JobInfo:
        state, flags = normalize_state(job.get("job_state"))
        exit_code, signal = decode_exit(job.get("exit_code"))
        return JobInfo(
            job_id=number(job.get("job_id")) or 0,
            name=job.get("name") or "",
            state=state,
            state_flags=flags,
            state_reason=job.get("state_reason") or None,
            exit_code=exit_code,
            signal=signal,
            user_name=job.get("user_name") or None,
            partition=job.get("partition") or None,
            nodes=job.get("nodes") or None,
            submit_time=timestamp(job.get("submit_time")),
            start_time=timestamp(job.get("start_time")),
            end_time=timestamp(job.get("end_time")),
            time_limit=number(job.get("time_limit")),
            standard_output=self._stdout(job) or None,
            standard_error=job.get("standard_error") or None,
            current_working_directory=job.get("current_working_directory") or None,
            comment=job.get("comment") or None,
            array_job_id=number(job.get("array_job_id")) or None,
            array_task_id=number(job.get("array_task_id")),
        )

    def parse_db_job(self, job: dict[str, Any]) -> JobInfo:
        """A slurmdbd (accounting) record: ``state.current``, ``time.{submission,start,
        end}``; a cancelled or timed-out job has SUCCESS/0 at job level and its signal
        on ``steps[]``, as ``sacct`` shows."""
        state_obj = job.get("state") or {}
        raw_state = state_obj.get("current") if isinstance(state_obj, dict) else state_obj
        state, flags = normalize_state(raw_state)
        exit_code, signal = decode_exit(job.get("exit_code"))
        if not signal:
            for step in job.get("steps") or []:
                _, step_signal = decode_exit(step.get("exit_code"))
                if step_signal:
                    exit_code, signal = None, step_signal
                    break
        times = job.get("time") or {}
        comment = job.get("comment")
        if isinstance(comment, dict):
            comment = comment.get("job")
        return JobInfo(
            job_id=number(job.get("job_id")) or 0, name=job.get("name") or "",
            state=state, state_flags=flags,
            state_reason=(state_obj.get("reason") if isinstance(state_obj, dict) else None) or None,
            exit_code=exit_code, signal=signal, user_name=job.get("user") or None,
            partition=job.get("partition") or None, nodes=job.get("nodes") or None,
            submit_time=timestamp(times.get("submission")), start_time=timestamp(times.get("start")),
            end_time=timestamp(times.get("end")), time_limit=number(times.get("limit")),
            standard_output=None, standard_error=None,
            current_working_directory=job.get("working_directory") or None,
            comment=comment or None)

    def last_update(self, body: dict[str, Any]) -> int | None:
        """slurmctld's own time of its last job change (v0.0.40+), for ``update_time``."""
        return number(body.get("last_update"))

    def _stdout(self, job: dict[str, Any]) -> str | None:
        return job.get("standard_output")

    def parse_jobs(self, body: dict[str, Any]) -> list[JobInfo]:
        return [self.parse_job(j) for j in body.get("jobs") or []]

    def parse_jobs_state(self, body: dict[str, Any]) -> dict[int, tuple[str, tuple[str, ...]]]:
        """``/jobs/state`` (v0.0.40+): job id (a string there) -> (state, flags)."""
        out = {}
        for item in body.get("jobs") or []:
            job_id = number(item.get("job_id"))
            if job_id is not None:
                out[job_id] = normalize_state(item.get("state"))
        return out
