"""``SlurmClient``: the one interface to slurmrestd the rest of the service uses.

It speaks our dataclasses (``JobSubmission`` in; ``JobInfo``, ``PingInfo``,
``DiagInfo``, ``NodeInfo``, ``PartitionInfo`` out), picks the API version (configured,
or the highest one both sides know, read from ``/openapi/v3``), and turns every
slurmrestd answer that is not a success into a ``SlurmError`` with a message a person
can act on. Every path and every shape comes from the version's adapter; this module
knows HTTP and error classes, not Slurm's JSON.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any

from ..batch import JobSubmission
from ..errors import (ConfigError, SlurmAuthError, SlurmError, SlurmJobFinished,
                      SlurmJobNotFound, SlurmRejected, SlurmUnavailable,
                      SlurmVersionUnserved)
from .transport import Response, Transport
from .versions import (ADAPTERS, Adapter, DiagInfo, JobInfo, JobsSince, NodeInfo,
                       PartitionInfo, PingInfo, version_key)
from .versions.base import decode_job_list, decode_jobs_state

logger = logging.getLogger(__name__)

_VERSION_IN_PATH = re.compile(r"^/slurm/v(\d+\.\d+\.\d+)/")

# Error numbers that mean "the credentials were refused", whatever the HTTP status.
AUTH_ERRORS = {1007: "Protocol authentication error",
               5005: "slurmrestd could not talk to slurmctld with the given token"}
JOB_NOT_FOUND = 2017
JOB_ALREADY_FINISHED = 2021
_ANY_VERSION = Adapter()


def describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        text = e["error"] or "error"
        if e["description"] and e["description"] not in text:
            text = f"{text}: {e['description']}"
        parts.append(f"{text} (Slurm error {e['code']})" if e["code"] is not None else text)
    return "; ".join(parts)


class SlurmClient:
    def __init__(self, transport: Transport, api_version: str = "auto"):
        self.transport = transport
        self._configured = api_version
        self._adapter: Adapter | None = None
        self._lock = threading.Lock()
        if api_version != "auto" and api_version.lstrip("v") not in ADAPTERS:
            raise ConfigError(f"SLURM_API_VERSION={api_version!r} is not supported; use "
                              f"auto or one of {', '.join(sorted(ADAPTERS, key=version_key))}.")

    # -- version -------------------------------------------------------------------
    @property
    def adapter(self) -> Adapter:
        if self._adapter is None:
            with self._lock:
                if self._adapter is None:
                    version = self._configured.lstrip("v")
                    if version == "auto":
                        version = self.detect_version()
                    self._adapter = ADAPTERS[version]()
                    logger.info("using slurmrestd API v%s", version)
        return self._adapter

    @property
    def api_version(self) -> str:
        return self.adapter.version

    def detect_version(self) -> str:
        resp = self.transport.request("GET", "/openapi/v3")
        self._check(resp, "GET /openapi/v3")
        paths = resp.json.get("paths") or {}
        served = {m.group(1) for p in paths if (m := _VERSION_IN_PATH.match(p))}
        usable = sorted(served & set(ADAPTERS), key=version_key)
        if not usable:
            raise SlurmRejected(
                f"slurmrestd serves API versions "
                f"{', '.join(sorted(served, key=version_key)) or 'none'}, none of which this "
                f"service supports ({', '.join(sorted(ADAPTERS, key=version_key))}). "
                f"Start slurmrestd with -s openapi/v0.0.38 or newer, or set "
                f"SLURM_API_VERSION to one of the versions both sides know.")
        return usable[-1]

    def served_versions(self) -> list[str]:
        """Every API version slurmrestd serves, known to us or not (for messages)."""
        resp = self.transport.request("GET", "/openapi/v3")
        self._check(resp, "GET /openapi/v3")
        paths = resp.json.get("paths") or {}
        return sorted({m.group(1) for p in paths if (m := _VERSION_IN_PATH.match(p))},
                      key=version_key)

    def _served_or_unknown(self) -> list[str]:
        try:
            return self.served_versions() or ["no version we can see"]
        except SlurmError:
            return ["versions it would not list (GET /openapi/v3 failed)"]

    # -- jobs ----------------------------------------------------------------------
    def submit(self, sub: JobSubmission, user: str) -> int:
        adapter = self.adapter
        resp = self.transport.request("POST", adapter.submit_path, user=user,
                                      json=adapter.submit_body(sub))
        self._check(resp, "submit")
        job_id = adapter.parse_submit(resp.json)
        if job_id is None:
            raise SlurmRejected("slurmrestd accepted the submit but returned no job id.")
        return job_id

    def get_job(self, job_id: int, user: str | None = None) -> JobInfo:
        """One job from slurmctld; as ``user`` (their token), so that Slurm's own
        ``PrivateData`` applies, or with the service's identity when None."""
        body = self._get(self.adapter.job_path(job_id), user=user, what=f"job {job_id}",
                         decode=decode_job_list)
        for job in self.adapter.parse_jobs(body):
            if job.job_id == job_id:
                return job
        raise SlurmJobNotFound(f"Slurm does not know job {job_id}.")

    def get_jobs(self) -> list[JobInfo]:
        return self.adapter.parse_jobs(self.raw("jobs"))

    def get_jobs_since(self, update_time: int | None, keep=None) -> JobsSince:
        """The jobs that changed since ``update_time`` (every job slurmctld knows, as
        slurmrestd has no finer answer), or ``unchanged`` when nothing did.

        ``update_time`` of the answer is what to ask from next, in slurmctld's own
        clock, so that a clock difference between this host and slurmctld can never
        hide a change. ``keep(job_id, state, flags)``: read only those jobs in full."""
        adapter = self.adapter
        params = {"update_time": update_time} if update_time else None
        resp = self.transport.request("GET", adapter.jobs_path, params=params,
                                      decode=decode_job_list)
        if resp.status != 304:
            self._check(resp, "GET /jobs", log_warnings=False)
        since = adapter.jobs_since(resp.status, resp.json, update_time, keep)
        if not since.unchanged:
            for warning in since.warnings:
                logger.warning("slurmrestd warning on GET /jobs: %s", warning)
        return since

    def get_job_states(self, job_ids) -> dict[int, tuple[str, tuple[str, ...]]]:
        """(state, flags) of just these jobs, about 60 bytes a job (v0.0.40+:
        ``GET /jobs/state?job_id=1,2,...``, batched). A job slurmctld no longer knows
        is absent from the answer."""
        adapter = self.adapter
        if not adapter.has_jobs_state:
            raise SlurmError(f"slurmrestd API v{adapter.version} has no /jobs/state.")
        ids = sorted(set(job_ids))
        out: dict[int, tuple[str, tuple[str, ...]]] = {}
        for i in range(0, len(ids), adapter.jobs_state_batch):
            batch = ids[i:i + adapter.jobs_state_batch]
            body = self._get(adapter.jobs_state_path, params=adapter.jobs_state_params(batch),
                             what="GET /jobs/state", decode=decode_jobs_state)
            out.update(adapter.parse_jobs_state(body))
        return out

    def slurmctld_time(self, job_id: int) -> int | None:
        """slurmctld's clock now, in whole seconds: the ``last_update`` of a ``GET
        /job/{id}`` answer (v0.0.40+; slurmctld stamps every job answer with its own
        ``time(NULL)``). None when the job is gone or the version does not say."""
        try:
            body = self._get(self.adapter.job_path(job_id), what=f"job {job_id}")
        except SlurmJobNotFound:
            return None
        return self.adapter.last_update(body)

    def get_db_job(self, job_id: int) -> JobInfo:
        """The accounting record of a job slurmctld has forgotten (needs slurmdbd)."""
        adapter = self.adapter
        resp = self.transport.request("GET", adapter.db_job_path(job_id))
        self._check(resp, f"job {job_id} in slurmdb")
        jobs = adapter.parse_db_jobs(resp.json)
        if not jobs:
            raise SlurmJobNotFound(f"slurmdb has no job {job_id}.")
        return jobs[0]

    def cancel(self, job_id: int, user: str | None = None) -> None:
        resp = self.transport.request("DELETE", self.adapter.job_path(job_id), user=user)
        self._check(resp, f"cancel job {job_id}")

    # -- the cluster -------------------------------------------------------------------
    def ping(self) -> list[PingInfo]:
        return self.adapter.parse_ping(self.raw("ping"))

    def diag(self) -> DiagInfo:
        return self.adapter.parse_diag(self.raw("diag"))

    def nodes(self) -> list[NodeInfo]:
        return self.adapter.parse_nodes(self.raw("nodes"))

    def partitions(self) -> list[PartitionInfo]:
        return self.adapter.parse_partitions(self.raw("partitions"))

    # -- raw answers, for the operator routes (labelled there with the version) -------
    RAW = {"ping": "/ping", "diag": "/diag", "jobs": "/jobs", "nodes": "/nodes",
           "partitions": "/partitions"}

    def raw(self, what: str, job_id: int | None = None) -> dict:
        """slurmrestd's own answer: ``what`` is one of ``RAW``, or ``job`` with ``job_id``."""
        if what == "job":
            return self._get(self.adapter.job_path(job_id), what=f"job {job_id}")
        return self._get(self.adapter.prefix + self.RAW[what], what=f"GET {self.RAW[what]}")

    def _get(self, path: str, *, params=None, user: str | None = None,
             what: str | None = None, decode=None) -> dict:
        resp = self.transport.request("GET", path, params=params, user=user, decode=decode)
        self._check(resp, what or f"GET {path}")
        return resp.json

    # -- answers -------------------------------------------------------------------
    def _check(self, resp: Response, what: str, *, log_warnings: bool = True) -> None:
        # Before the version is known (GET /openapi/v3), the base adapter reads errors.
        adapter = self._adapter or _ANY_VERSION
        errors = adapter.errors(resp.body)
        if log_warnings:
            for warning in adapter.warnings(resp.body):
                logger.warning("slurmrestd warning on %s: %s", what, warning)
        codes = {e["code"] for e in errors}
        if resp.status == 401 or codes & set(AUTH_ERRORS) or resp.status == 511:
            raise SlurmAuthError(
                f"Authentication to slurmrestd failed on {what} (HTTP {resp.status}): check "
                f"the service's token or HS256 key and that the user exists on the cluster.",
                errors={"slurm_errors": errors})
        if JOB_ALREADY_FINISHED in codes:
            raise SlurmJobFinished(f"Slurm says {what}: the job has already finished.",
                                   errors={"slurm_errors": errors})
        if resp.status == 404 and not isinstance(resp.body, dict) and self._adapter:
            # slurmrestd's own "Unable find requested URL": not this version's path.
            raise SlurmVersionUnserved(
                f"slurmrestd does not serve API v{self._adapter.version} ({what}); it serves "
                f"{', '.join(self._served_or_unknown())}. Set SLURM_API_VERSION=auto or one "
                f"of those, or load openapi/v{self._adapter.version} in slurmrestd (-s).")
        if JOB_NOT_FOUND in codes or (resp.status == 404 and what.startswith("job")):
            raise SlurmJobNotFound(f"Slurm does not know {what}.", errors={"slurm_errors": errors})
        if resp.status == 500 and errors and all(e["code"] in (-1, None) for e in errors):
            # Slurm 22.05 answers a token slurmctld refuses with an unspecified error.
            raise SlurmError(
                f"slurmrestd could not complete {what}: {describe(errors)}. On Slurm 22.05 "
                f"this is also how an invalid or expired token shows: check the service's "
                f"credentials.", errors={"slurm_errors": errors})
        if errors:
            raise SlurmRejected(f"slurmrestd refused {what}: {describe(errors)}",
                                errors={"slurm_errors": errors})
        if resp.status >= 500 and resp.status in (502, 503, 504):
            raise SlurmUnavailable(f"slurmrestd answered HTTP {resp.status} to {what}.")
        if not 200 <= resp.status < 300:
            raise SlurmError(f"slurmrestd answered HTTP {resp.status} to {what}"
                             + (f": {str(resp.body)[:200]}" if resp.body else "."))
