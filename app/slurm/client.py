"""``SlurmClient``: the one interface to slurmrestd the rest of the service uses.

It speaks our dataclasses (``JobSubmission`` in, ``JobInfo`` out), picks the API
version (configured, or the highest one both sides know, read from ``/openapi/v3``),
and turns every slurmrestd answer that is not a success into a ``SlurmError`` with a
message a person can act on.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any

from ..batch import JobSubmission
from ..errors import (ConfigError, SlurmAuthError, SlurmError, SlurmJobFinished,
                      SlurmJobNotFound, SlurmRejected, SlurmUnavailable)
from .transport import Response, Transport
from .versions import ADAPTERS, Adapter, JobInfo, version_key

logger = logging.getLogger(__name__)

_VERSION_IN_PATH = re.compile(r"^/slurm/v(\d+\.\d+\.\d+)/")

# Error numbers that mean "the credentials were refused", whatever the HTTP status.
AUTH_ERRORS = {1007: "Protocol authentication error",
               5005: "slurmrestd could not talk to slurmctld with the given token"}
JOB_NOT_FOUND = 2017
JOB_ALREADY_FINISHED = 2021


def slurm_errors(body: Any) -> list[dict[str, Any]]:
    """slurmrestd's ``errors[]`` reduced to ``{code, error, description}``."""
    if not isinstance(body, dict):
        return []
    out = []
    for item in body.get("errors") or []:
        if not isinstance(item, dict):
            continue
        code = item.get("error_number", item.get("error_code"))
        out.append({"code": code, "error": item.get("error") or "",
                    "description": item.get("description") or ""})
    # v0.0.42+ DELETE: per-job results in status[], still with HTTP 200.
    for item in body.get("status") or []:
        err = item.get("error") if isinstance(item, dict) else None
        if isinstance(err, dict) and err.get("code"):
            out.append({"code": err["code"], "error": err.get("string") or "",
                        "description": err.get("message") or ""})
    return out


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
                f"slurmrestd serves API versions {sorted(served) or 'none'}, none of which "
                f"this service supports ({', '.join(sorted(ADAPTERS, key=version_key))}). "
                f"Start slurmrestd with -s openapi/v0.0.38 or newer.")
        return usable[-1]

    # -- jobs ----------------------------------------------------------------------
    def submit(self, sub: JobSubmission, user: str) -> int:
        adapter = self.adapter
        resp = self.transport.request("POST", f"{adapter.prefix}/job/submit", user=user,
                                      json=adapter.submit_body(sub))
        self._check(resp, "submit")
        job_id = adapter.parse_submit(resp.json)
        if job_id is None:
            raise SlurmRejected("slurmrestd accepted the submit but returned no job id.")
        return job_id

    def get_job(self, job_id: int, user: str | None = None) -> JobInfo:
        """One job, read as ``user`` (the task's owner, so that Slurm's own
        ``PrivateData`` applies), or as the service itself when None."""
        body = self.job_raw(job_id, user=user)
        jobs = self.adapter.parse_jobs(body)
        for job in jobs:
            if job.job_id == job_id:
                return job
        raise SlurmJobNotFound(f"Slurm does not know job {job_id}.")

    def get_jobs(self, update_time: int | None = None) -> list[JobInfo]:
        return self.adapter.parse_jobs(self.jobs_raw(update_time))

    def get_jobs_since(self, update_time: int | None) -> tuple[list[JobInfo] | None, int | None]:
        """All jobs, or None when nothing changed since ``update_time`` (HTTP 304).

        Returns the jobs and an ``update_time`` for the next call, in slurmctld's own
        clock (its ``last_update``, or the newest time any job carries) so that a clock
        difference between this host and slurmctld can never hide a change."""
        adapter = self.adapter
        params = {"update_time": update_time} if update_time else None
        resp = self.transport.request("GET", f"{adapter.prefix}/jobs", params=params)
        if resp.status == 304:
            return None, update_time
        self._check(resp, "GET /jobs")
        jobs = adapter.parse_jobs(resp.json)
        stamp = adapter.last_update(resp.json)
        if stamp is None:
            # Only times that have happened: a running job's end_time and a pending
            # job's start_time are Slurm's projections, possibly in the future.
            times = [j.submit_time for j in jobs if j.submit_time]
            times += [j.start_time for j in jobs if j.start_time and j.state != "PENDING"]
            times += [j.end_time for j in jobs if j.end_time and j.is_terminal]
            stamp = int(max(times).timestamp()) - 1 if times else None
        return jobs, stamp

    def get_db_job(self, job_id: int) -> JobInfo:
        """The accounting record of a job slurmctld has forgotten (needs slurmdbd)."""
        version = self.adapter.version
        resp = self.transport.request("GET", f"/slurmdb/v{version}/job/{job_id}")
        self._check(resp, f"job {job_id} in slurmdb")
        jobs = resp.json.get("jobs") or []
        if not jobs:
            raise SlurmJobNotFound(f"slurmdb has no job {job_id}.")
        return self.adapter.parse_db_job(jobs[0])

    def cancel(self, job_id: int, user: str | None = None) -> None:
        resp = self.transport.request("DELETE", f"{self.adapter.prefix}/job/{job_id}", user=user)
        self._check(resp, f"cancel job {job_id}")

    # -- raw answers for the operator routes ----------------------------------------
    def ping(self) -> dict:
        return self._get("/ping")

    def diag(self) -> dict:
        return self._get("/diag")

    def nodes(self) -> dict:
        return self._get("/nodes")

    def partitions(self) -> dict:
        return self._get("/partitions")

    def jobs_raw(self, update_time: int | None = None) -> dict:
        params = {"update_time": update_time} if update_time else None
        return self._get("/jobs", params=params)

    def job_raw(self, job_id: int, user: str | None = None) -> dict:
        return self._get(f"/job/{job_id}", what=f"job {job_id}", user=user)

    def _get(self, path: str, *, params=None, what: str | None = None,
             user: str | None = None) -> dict:
        resp = self.transport.request("GET", self.adapter.prefix + path, params=params, user=user)
        self._check(resp, what or f"GET {path}")
        return resp.json

    # -- answers -------------------------------------------------------------------
    def _check(self, resp: Response, what: str) -> None:
        errors = slurm_errors(resp.body)
        for warning in (resp.json.get("warnings") or []) if isinstance(resp.body, dict) else []:
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
