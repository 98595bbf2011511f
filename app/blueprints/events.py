"""``POST /events/slurm/jobcomp``: slurmctld says a job ended.

What slurmctld's jobcomp/elasticsearch plugin sends (one JSON document per finished
job, to the URL in ``JobCompLoc``), and what ``slurm-proxy-event`` (the forwarder for
jobcomp/script and EpilogSlurmctld) sends. Authentication is HTTP Basic: the user is
the cluster's name, the password its event secret (SLURM_EVENT_SECRET; several,
comma-separated, while rotating). The plugin can send no other header, so the
credentials are in the URL the admin writes into slurm.conf.

An event is a hint, not the truth: the job is read again from slurmrestd and recorded
through ``tracking.record_job_state`` (compare-and-set, history, deliveries), so a
forged event cannot change anything that Slurm does not confirm. Jobs that are not
ours are ignored. The answer is 201 (or 200 when ignored) as Elasticsearch would give,
so slurmctld does not send it again. The document carries the job's whole batch
script: it is never stored or logged; only ``jobid`` and ``state`` are read.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..errors import SlurmError, SlurmProxyError, StoreUnavailable, invalid
from ..services import get_services
from ..slurm.clusters import cluster_configs
from ..states import FINAL_STATES, TERMINAL_STATES
from ..store import utcnow
from ..tracking import record_job_state, settled_state

logger = logging.getLogger(__name__)
blp = Blueprint("events", __name__)

SETTLE_SECONDS = 2.0      # how long to wait for slurmctld to finish a job it reported ended
SETTLE_STEP = 0.1
EVENT_MAX_BYTES = 16 * 1024 * 1024


class EventUnauthorized(SlurmProxyError):
    status = 401
    code = "unauthorized"


def event_secrets(config) -> dict[str, list[str]]:
    """Each cluster's accepted event secrets (empty list: events refused)."""
    return {name: list(settings["SLURM_EVENT_SECRET"])
            for name, settings in cluster_configs(config).items()}


def authenticated_cluster(secrets: dict[str, list[str]]) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        raise EventUnauthorized("Events need HTTP Basic credentials: the cluster name and its "
                                "event secret (in the JobCompLoc URL).")
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise EventUnauthorized("Malformed HTTP Basic credentials.") from None
    accepted = secrets.get(user) or []
    # Compare with every secret, so the time taken says nothing about which was close.
    ok = False
    for secret in accepted:
        ok |= hmac.compare_digest(password.encode(), secret.encode())
    if not ok:
        raise EventUnauthorized("Wrong cluster name or event secret.")
    return user


def job_id_of(doc: Any) -> int:
    if not isinstance(doc, dict):
        raise invalid({"body": ["A JSON object is required."]})
    raw = doc.get("jobid", doc.get("job_id"))
    try:
        job_id = int(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        job_id = None
    if job_id is None or not 0 < job_id < 2**32:
        raise invalid({"jobid": ["A Slurm job id (a positive integer) is required."]})
    return job_id


def event_lag(doc: dict[str, Any], now: datetime) -> float | None:
    """Seconds from the job's end to this event, from jobcomp/elasticsearch's ``@end``
    (slurmctld's local time without a zone, read in ours); None when the event does
    not say (the forwarder's, which slurmctld runs at the job's end and never resends).
    slurmctld resends what it could not deliver, oldest first, so after an outage the
    events describe jobs long ended: the poller relaxes only while they are timely."""
    end = doc.get("@end")
    if not isinstance(end, str):
        return None
    try:
        ended = datetime.fromisoformat(end[:19]).astimezone()
    except ValueError:
        return None
    return round((now - ended).total_seconds(), 1)


@blp.post("/events/slurm/jobcomp")
def jobcomp():
    services = get_services()
    secrets = current_app.extensions.get("slurm_proxy_event_secrets")
    if secrets is None:
        secrets = current_app.extensions["slurm_proxy_event_secrets"] = \
            event_secrets(services.config)
    cluster = authenticated_cluster(secrets)
    # The document carries the batch script (up to Slurm's 4 MB by default); refusing
    # it would make slurmctld resend it forever.
    request.max_content_length = EVENT_MAX_BYTES
    doc = request.get_json(silent=True)
    job_id = job_id_of(doc)
    said = str(doc.get("state") or "")[:32]
    try:
        now = utcnow()
        services.store.beat(f"events:{cluster}", now,
                            {"last_job_id": job_id, "lag": event_lag(doc, now)})
        record = services.store.get_by_job_id(job_id, cluster)
        if record is None and cluster == services.slurm.default:
            record = services.store.get_by_job_id(job_id)    # a record without a cluster
            if record is not None and record["task"].get("cluster"):
                record = None
    except StoreUnavailable:
        record = None
    if record is None or record["slurm_job_state"] in FINAL_STATES \
            or record["task"].get("slurm", {}).get("array"):
        # Not ours, already final, or an array (recorded from all its elements by the poller).
        return jsonify({"result": "noop", "_id": str(job_id)}), 200
    outcome = observe(services, cluster, record, job_id, said)
    logger.info("event cluster=%s task_uuid=%s slurm_job_id=%s state=%s: %s", cluster,
                record["task"]["uuid"], job_id, said or "-", outcome)
    return jsonify({"result": "created", "_id": str(job_id)}), 201


def observe(services, cluster: str, record: dict[str, Any], job_id: int, said: str) -> str:
    """Read the job from slurmrestd and record its state; while slurmctld still
    finishes a job it reported ended (COMPLETING), ask again for a moment."""
    client = services.slurm.get(cluster)
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            job = client.get_job(job_id)
        except SlurmError as exc:
            return f"slurmrestd: {exc.code} (the poller will catch up)"
        if settled_state(job) is not None or said not in TERMINAL_STATES \
                or time.monotonic() >= deadline:
            break
        time.sleep(SETTLE_STEP)
    if record_job_state(services.store, record, job):
        return f"recorded {record['slurm_job_state']}"
    return f"no change (slurmrestd says {job.state})"
