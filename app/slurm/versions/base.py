"""What every slurmrestd API version has in common, and the dataclasses we speak.

An adapter owns every shape that depends on the API version: the paths, the submit
body and answer, a job, the job list and "no change since", ``/jobs/state``, errors
and warnings (``status[]`` too), ping, diag, nodes, partitions and slurmdb records.
It turns them into our own dataclasses (``JobInfo``, ``PingInfo``, ``DiagInfo``,
``NodeInfo``, ``PartitionInfo``), so nothing outside ``app/slurm/versions`` reads
Slurm's JSON. Reading is tolerant (a number may be an int or a ``{set, infinite,
number}`` struct; a state a string or a list), so each version module declares only
where its shapes differ from the one before. Adding a version is one module that
subclasses its predecessor, plus one line in ``versions/__init__.py``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec

from ...batch import JobSubmission
from ...states import PENDING, is_terminal, normalize_state


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


@dataclass(frozen=True)
class PingInfo:
    """One slurmctld as slurmrestd's ``/ping`` sees it."""
    hostname: str
    up: bool
    primary: bool | None
    latency: int | None             # microseconds
    status: str | None              # why it is not up, when Slurm says


@dataclass(frozen=True)
class DiagInfo:
    """slurmctld's scheduler statistics (``/diag``), the counters every version has."""
    server_thread_count: int | None
    agent_queue_size: int | None
    jobs_submitted: int | None
    jobs_started: int | None
    jobs_completed: int | None
    jobs_canceled: int | None
    jobs_failed: int | None
    jobs_pending: int | None
    jobs_running: int | None
    schedule_cycle_last: int | None     # microseconds
    schedule_cycle_max: int | None
    schedule_queue_length: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    state: str                      # base state, upper case: IDLE, MIXED, ALLOCATED, DOWN...
    flags: tuple[str, ...]          # DRAIN, NOT_RESPONDING, ...
    cpus: int
    alloc_cpus: int
    partitions: tuple[str, ...]
    real_memory: int | None         # MB
    alloc_memory: int | None

    @property
    def states(self) -> frozenset[str]:
        return frozenset((self.state, *self.flags))


@dataclass(frozen=True)
class PartitionInfo:
    name: str
    state: str | None               # UP, DOWN, DRAIN, INACTIVE
    total_nodes: int | None
    total_cpus: int | None
    nodes: str | None               # Slurm's host list, e.g. "node[01-04]"


@dataclass(frozen=True)
class JobsSince:
    """The answer to "which jobs changed since ``update_time``?".

    ``jobs`` is None when slurmctld says nothing changed (HTTP 304 on v0.0.38; HTTP 200
    with ``jobs: []`` and a warning on v0.0.40+), which is not an empty cluster.
    ``update_time`` is what to ask from next, in slurmctld's own clock."""
    jobs: list["JobInfo"] | None
    update_time: int | None
    warnings: tuple[str, ...] = field(default=())
    listed: int = 0                 # jobs in slurmctld's answer (``jobs`` may be fewer)

    @property
    def unchanged(self) -> bool:
        return self.jobs is None


def number(value) -> int | None:
    """An int, or the number in a ``{set, infinite, number}`` struct when set (a dict,
    or ``Num`` when decoded straight from JSON)."""
    kind = type(value)
    if kind is int:
        return value
    if kind is Num:
        return None if value.infinite or not value.set else value.number
    if value is None or kind is bool:
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
    return _fromtimestamp(seconds, _UTC)


_fromtimestamp, _UTC = datetime.fromtimestamp, timezone.utc


def decode_exit(value) -> tuple[int | None, int | None]:
    """(exit code, signal) from any version's ``exit_code``.

    v0.0.38: the raw wait status (exit 3 -> 768; killed by SIGTERM -> 15).
    v0.0.39+: ``{status, return_code, signal: {id|signal_id, name}}``.
    """
    if type(value) is Exit:
        sig_obj = value.signal
        sig = None if sig_obj is None else \
            number(sig_obj.signal_id if sig_obj.id is msgspec.UNSET else sig_obj.id)
        if "SIGNALED" in (value.status or ()) and sig:
            return None, sig
        return number(value.return_code), sig or None
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


_PATH_PATTERN = re.compile(r"%(%|[jJuxAa])")


def expand_path(pattern: str | None, job_id: int, user: str | None, name: str | None,
                array_job_id: int | None = None, array_task_id: int | None = None) -> str | None:
    """Slurm's filename pattern with the replacements ``sbatch`` makes that need no
    node: ``%j``/``%J`` job id, ``%u`` user, ``%x`` job name, ``%A``/``%a`` array job
    and task id, ``%%``. Others (``%N``, ``%t``...) are left as Slurm printed them."""
    if not pattern or "%" not in pattern:
        return pattern

    def one(m: re.Match) -> str:
        code = m.group(1)
        if code == "%":
            return "%"
        if code in "jJ":
            return str(job_id)
        if code == "u":
            return user or m.group(0)
        if code == "x":
            return name or m.group(0)
        if code == "A":
            return str(array_job_id or job_id)
        return str(array_task_id) if array_task_id is not None else m.group(0)
    return _PATH_PATTERN.sub(one, pattern)


class Num(msgspec.Struct, gc=False):
    """A number as v0.0.39+ writes it: ``{set, infinite, number}``."""
    set: bool = True
    infinite: bool = False
    number: int | None = None


_Number = int | Num | None


class Signal(msgspec.Struct, gc=False):
    """``exit_code.signal`` (v0.0.39+); ``id`` is ``signal_id`` in some versions."""
    id: _Number | msgspec.UnsetType = msgspec.UNSET
    signal_id: _Number | msgspec.UnsetType = msgspec.UNSET


class Exit(msgspec.Struct, gc=False):
    """``exit_code`` as v0.0.39+ writes it (v0.0.38: the raw wait status, an int)."""
    status: Any = None
    return_code: _Number = None
    signal: Signal | None = None


class JobFields(msgspec.Struct, gc=False):
    """The fields of a job that ``Adapter.parse_job`` reads (every version's), decoded
    straight from slurmrestd's JSON, the hundreds of others skipped unread: a whole job
    is 6-10 kB of JSON, and decoding all of it into dicts was most of the cost of
    reading one. ``parse_job`` reads a job only through these attributes (a job
    decoded as a dict is made one first: ``_job_fields``). An answer whose
    types differ from these (a string where a number was expected...) is read the
    generic way instead (``decode_job_list``), so reading stays as tolerant.
    A field ``parse_job`` reads that is missing here is an ``AttributeError``, never a
    value read as absent; tests/unit/test_adapters.py checks that both ways read every
    recorded job alike."""
    job_id: _Number = None
    job_state: str | tuple[str, ...] | None = None
    name: str | None = None
    state_reason: str | None = None
    exit_code: int | Exit | None = None
    user_name: str | None = None
    partition: str | None = None
    nodes: str | None = None
    submit_time: _Number = None
    start_time: _Number = None
    end_time: _Number = None
    time_limit: _Number = None
    standard_output: str | None = None
    standard_error: str | None = None
    current_working_directory: str | None = None
    comment: str | None = None
    array_job_id: _Number = None
    array_task_id: _Number = None
    stdout_expanded: str | None = None          # v0.0.43+
    stderr_expanded: str | None = None


def _job_fields(job: dict[str, Any]) -> JobFields:
    """A job decoded the generic way (a dict, its values of any type) as ``JobFields``,
    so that ``parse_job`` has one way of reading: the values are kept as they are (a
    struct's constructor checks no types) and ``number`` & co. read them as tolerantly."""
    return JobFields(*[job.get(key) for key in JobFields.__struct_fields__])


_new_object, _set_attribute = object.__new__, object.__setattr__


def _job_info(values: dict[str, Any]) -> JobInfo:
    """``JobInfo(**values)``, ``values`` naming every field, without the frozen
    dataclass's ``__init__``: its ``object.__setattr__`` per field was a third of the
    cost of reading a job. tests/unit/test_adapters.py checks both make equal jobs."""
    job = _new_object(JobInfo)
    _set_attribute(job, "__dict__", values)
    return job


class _JobList(msgspec.Struct):
    """A job list's envelope, its jobs as ``JobFields``."""
    jobs: list[JobFields] = []
    errors: Any = None
    warnings: Any = None
    status: Any = None
    last_update: Any = None


class _JobHead(msgspec.Struct):
    """What the poller reads of every listed job before deciding to read it all."""
    job_id: Any = None
    job_state: Any = None


class _RawJobList(msgspec.Struct):
    """A job list's envelope; each job stays undecoded JSON until it is wanted."""
    jobs: list[msgspec.Raw] = []
    errors: Any = None
    warnings: Any = None
    status: Any = None
    last_update: Any = None


class _StateItem(msgspec.Struct, gc=False):
    """One job of ``/jobs/state``: its id (a string there, read as a number) and
    state. Any other shape is a ``ValidationError``: the answer is then read the
    generic way (``Transport._read``), and ``parse_jobs_state`` reads dicts too."""
    job_id: int | None = None
    state: tuple[str, ...] | str | None = None


class _StateList(msgspec.Struct):
    jobs: list[_StateItem] = []
    errors: Any = None
    warnings: Any = None


def decode_jobs_state(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """``GET /jobs/state``'s answer, its jobs as ``_StateItem`` (any other field of a
    job skipped): a poller names thousands of its jobs there each changed cycle."""
    body = _decode_state_list(data)
    return {"jobs": body.jobs, "errors": body.errors, "warnings": body.warnings}


_decode_state_list = msgspec.json.Decoder(_StateList, strict=False).decode   # "123" -> 123
_decode_list = msgspec.json.Decoder(_JobList).decode
_decode_raw_list = msgspec.json.Decoder(_RawJobList).decode
_decode_head = msgspec.json.Decoder(_JobHead).decode
_decode_any = msgspec.json.Decoder().decode


def decode_job_list(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """``GET /jobs`` (or ``/job/{id}``)'s answer, each job read in one pass as
    ``JobFields`` (the fields we use, the rest skipped): ``json.loads`` of a whole
    job list was most of a poll's CPU. If some job's types differ from
    ``JobFields``', each job is left as undecoded JSON instead, for ``parse_jobs`` to
    read its id and state, and in full (as a dict) only those it keeps. Nothing
    returned points into ``data`` (its buffer carries the next answer): ``msgspec.Raw``
    would, so that way reads a copy."""
    try:
        body = _decode_list(data)
    except msgspec.ValidationError:
        body = _decode_raw_list(bytes(data))
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}


_STATES: dict[Any, tuple[str, tuple[str, ...]]] = {}


def job_state(raw) -> tuple[str, tuple[str, ...]]:
    """``normalize_state``, remembered: a job list has a handful of distinct states."""
    try:
        return _STATES[raw]
    except (KeyError, TypeError):          # TypeError: a list (from a dict) is unhashable
        state = normalize_state(raw)
        if type(raw) in (str, tuple) and len(_STATES) < 1024:
            _STATES[raw] = state
        return state


class Adapter:
    """Requests and answers of one slurmrestd API version."""

    version = "base"
    script_in_job = True          # job.script (v0.0.39+) or top-level "script" (v0.0.38)
    environment_as_list = True    # ["K=V"] (v0.0.39+) or {"K": "V"} (v0.0.38)
    numbers_as_struct = True      # {"set": true, "number": N} (v0.0.39+) or plain ints
    has_jobs_state = False        # GET /jobs/state?job_id=... (v0.0.40+)
    jobs_state_batch = 200        # job ids per /jobs/state request (keeps the URL short)

    # The fields read from each answer, checked against the OpenAPI document that a
    # real slurmrestd serves for this version (tests/unit/test_adapters.py).
    ping_fields: tuple[str, ...] = ("hostname", "ping", "mode")
    node_fields: tuple[str, ...] = ("name", "state", "state_flags", "cpus", "alloc_cpus",
                                    "partitions", "real_memory", "alloc_memory")
    partition_fields: tuple[str, ...] = ("name", "state", "total_nodes", "total_cpus", "nodes")
    diag_fields: tuple[str, ...] = tuple(DiagInfo.__dataclass_fields__)

    # -- paths -----------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return f"/slurm/v{self.version}"

    @property
    def db_prefix(self) -> str:
        return f"/slurmdb/v{self.version}"

    @property
    def submit_path(self) -> str:
        return f"{self.prefix}/job/submit"

    @property
    def jobs_path(self) -> str:
        return f"{self.prefix}/jobs"

    @property
    def jobs_state_path(self) -> str:
        return f"{self.prefix}/jobs/state"

    def job_path(self, job_id: int) -> str:
        return f"{self.prefix}/job/{job_id}"

    def db_job_path(self, job_id: int) -> str:
        return f"{self.db_prefix}/job/{job_id}"

    def jobs_state_params(self, job_ids) -> dict[str, str]:
        return {"job_id": ",".join(str(j) for j in job_ids)}

    # -- errors and warnings ---------------------------------------------------------
    def errors(self, body: Any) -> list[dict[str, Any]]:
        """``errors[]`` reduced to ``{code, error, description}``. v0.0.38 puts the code
        in ``error_number`` (GET, DELETE) or ``error_code`` (submit): read both."""
        if not isinstance(body, dict):
            return []
        out = []
        for item in body.get("errors") or []:
            if not isinstance(item, dict):
                continue
            code = item.get("error_number", item.get("error_code"))
            out.append({"code": code, "error": item.get("error") or "",
                        "description": item.get("description") or ""})
        return out

    def warnings(self, body: Any) -> list[str]:
        """``warnings[]`` (v0.0.39+) as text."""
        if not isinstance(body, dict):
            return []
        out = []
        for item in body.get("warnings") or []:
            if isinstance(item, dict):
                out.append(item.get("description") or item.get("source") or str(item))
            elif item:
                out.append(str(item))
        return out

    # -- the job list since a time ----------------------------------------------------
    def jobs_since(self, status: int, body: Any, asked: int | None,
                   keep=None) -> JobsSince:
        """v0.0.38: HTTP 304 with no body means nothing changed since ``asked``;
        otherwise every job slurmctld knows, and no ``last_update`` to ask from next,
        so the newest time that has already happened stands in for it. With ``keep``
        (see ``parse_jobs``) only the jobs it keeps are read in full."""
        if status == 304:
            return JobsSince(None, asked)
        jobs = self.parse_jobs(body, keep)
        return JobsSince(jobs, self._next_update_time(body, jobs),
                         tuple(self.warnings(body)), len(body.get("jobs") or []))

    def _next_update_time(self, body: dict[str, Any], jobs: list["JobInfo"]) -> int | None:
        stamp = self.last_update(body)
        if stamp:
            return stamp
        # Only times that have happened: a running job's end_time and a pending
        # job's start_time are Slurm's projections, possibly in the future.
        times = [j.submit_time for j in jobs if j.submit_time]
        times += [j.start_time for j in jobs if j.start_time and j.state != PENDING]
        times += [j.end_time for j in jobs if j.end_time and j.is_terminal]
        return int(max(times).timestamp()) - 1 if times else None

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

    def parse_job(self, job: dict[str, Any] | JobFields) -> JobInfo:
        if type(job) is not JobFields:
            job = _job_fields(job)
        state, flags = job_state(job.job_state)
        exit_code, signal = decode_exit(job.exit_code)
        return _job_info({
            "job_id": number(job.job_id) or 0,
            "name": job.name or "",
            "state": state,
            "state_flags": flags,
            "state_reason": job.state_reason or None,
            "exit_code": exit_code,
            "signal": signal,
            "user_name": job.user_name or None,
            "partition": job.partition or None,
            "nodes": job.nodes or None,
            "submit_time": timestamp(job.submit_time),
            "start_time": timestamp(job.start_time),
            "end_time": timestamp(job.end_time),
            "time_limit": number(job.time_limit),
            "standard_output": self._stdout(job),
            "standard_error": self._stderr(job),
            "current_working_directory": job.current_working_directory or None,
            "comment": job.comment or None,
            "array_job_id": number(job.array_job_id) or None,
            "array_task_id": number(job.array_task_id),
        })

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

    def _expand(self, job: JobFields, pattern: str | None) -> str | None:
        if not pattern or "%" not in pattern:
            return pattern
        return expand_path(pattern, number(job.job_id) or 0, job.user_name, job.name,
                           number(job.array_job_id) or None, number(job.array_task_id))

    def _stdout(self, job: JobFields) -> str | None:
        """Where the job's stdout goes, with ``%j`` and friends replaced."""
        return self._expand(job, job.standard_output) or None

    def _stderr(self, job: JobFields) -> str | None:
        """Where the job's stderr goes. An empty ``standard_error`` (Slurm 25.11+, any
        API version it serves) means "no separate file": stderr goes with stdout."""
        return self._expand(job, job.standard_error) or self._stdout(job)

    def parse_jobs(self, body: dict[str, Any], keep=None) -> list[JobInfo]:
        """Every job; or, with ``keep(job_id, state, flags) -> bool``, only those it
        keeps, the others costing just their id and state (a long list, few of ours)."""
        jobs = body.get("jobs") or []
        first = jobs[0] if jobs else None
        if type(first) is JobFields:                      # from decode_job_list
            if keep is None:
                return [self.parse_job(j) for j in jobs]
            return [self.parse_job(j) for j in jobs
                    if keep(number(j.job_id) or 0, *job_state(j.job_state))]
        if isinstance(first, msgspec.Raw):   # from decode_job_list, the generic way
            if keep is None:
                return [self.parse_job(_decode_any(raw)) for raw in jobs]
            out = []
            for raw in jobs:
                head = _decode_head(raw)
                if keep(number(head.job_id) or 0, *job_state(head.job_state)):
                    out.append(self.parse_job(_decode_any(raw)))
            return out
        if keep is None:
            return [self.parse_job(j) for j in jobs]
        return [self.parse_job(j) for j in jobs
                if keep(number(j.get("job_id")) or 0, *job_state(j.get("job_state")))]

    def parse_jobs_state(self, body: dict[str, Any]) -> dict[int, tuple[str, tuple[str, ...]]]:
        """``/jobs/state`` (v0.0.40+): job id (a string there) -> (state, flags).
        Thousands of jobs share a handful of states (``job_state`` remembers them)."""
        jobs = body.get("jobs") or []
        if jobs and type(jobs[0]) is _StateItem:           # from decode_jobs_state
            known = _STATES.get              # (a state, a tuple or str, is hashable here)
            return {item.job_id: known(item.state) or job_state(item.state) for item in jobs
                    if item.job_id is not None}
        out = {}
        for item in jobs:
            job_id = number(item.get("job_id"))
            if job_id is not None:
                raw = item.get("state")
                out[job_id] = job_state(tuple(raw) if type(raw) is list else raw)
        return out

    def parse_db_jobs(self, body: dict[str, Any]) -> list[JobInfo]:
        """``/slurmdb/vX/job/{id}``: an unknown id is HTTP 200 with ``jobs: []``."""
        return [self.parse_db_job(j) for j in body.get("jobs") or []]

    # -- ping, diag, nodes, partitions -------------------------------------------------
    def parse_ping(self, body: dict[str, Any]) -> list[PingInfo]:
        """v0.0.38: ``{"hostname", "ping": "UP", "status": 0, "mode": "primary"}``;
        v0.0.39-41 call it ``pinged``."""
        out = []
        for p in body.get("pings") or []:
            said = p.get("ping", p.get("pinged"))
            out.append(PingInfo(hostname=p.get("hostname") or "", up=said == "UP",
                                primary=(p.get("mode") == "primary") if p.get("mode") else None,
                                latency=number(p.get("latency")),
                                status=None if said == "UP" else said))
        return out

    def parse_diag(self, body: dict[str, Any]) -> DiagInfo:
        stats = body.get("statistics") or {}
        return DiagInfo(**{name: number(stats.get(name)) for name in DiagInfo.__dataclass_fields__})

    def parse_nodes(self, body: dict[str, Any]) -> list[NodeInfo]:
        return [self.parse_node(n) for n in body.get("nodes") or []]

    def parse_node(self, node: dict[str, Any]) -> NodeInfo:
        """v0.0.38: ``state`` one lower-case string, flags in ``state_flags``;
        ``partitions`` a list."""
        names = _names(node.get("state")) + _names(node.get("state_flags"))
        base = names[0] if names else "UNKNOWN"
        return NodeInfo(name=node.get("name") or "", state=base, flags=tuple(names[1:]),
                        cpus=number(node.get("cpus")) or 0,
                        alloc_cpus=number(node.get("alloc_cpus")) or 0,
                        partitions=tuple(_csv(node.get("partitions"))),
                        real_memory=number(node.get("real_memory")),
                        alloc_memory=number(node.get("alloc_memory")))

    def parse_partitions(self, body: dict[str, Any]) -> list[PartitionInfo]:
        return [self.parse_partition(p) for p in body.get("partitions") or []]

    def parse_partition(self, part: dict[str, Any]) -> PartitionInfo:
        """v0.0.38: ``state`` "UP", ``total_nodes``, ``total_cpus``, ``nodes`` a host
        list. v0.0.39+ nest them: ``partition.state`` a list, ``nodes.{total,
        configured}``, ``cpus.total``."""
        nodes = part.get("nodes")
        if isinstance(nodes, dict):
            states = _names((part.get("partition") or {}).get("state"))
            return PartitionInfo(name=part.get("name") or "",
                                 state=states[0] if states else None,
                                 total_nodes=number(nodes.get("total")),
                                 total_cpus=number((part.get("cpus") or {}).get("total")),
                                 nodes=nodes.get("configured") or None)
        states = _names(part.get("state"))
        return PartitionInfo(name=part.get("name") or "", state=states[0] if states else None,
                             total_nodes=number(part.get("total_nodes")),
                             total_cpus=number(part.get("total_cpus")), nodes=nodes or None)


def _names(value) -> list[str]:
    """A state as a string (``"idle"``, ``"IDLE+DRAIN"``) or a list, upper-cased."""
    if not value:
        return []
    if isinstance(value, str):
        return [p.upper() for p in re.split(r"[+,\s]+", value) if p]
    return [str(p).upper() for p in value]


def _csv(value) -> list[str]:
    """A list, or a comma-separated string (Slurm's ``csv_string``)."""
    if not value:
        return []
    if isinstance(value, str):
        return [p for p in value.split(",") if p]
    return [str(p) for p in value]
