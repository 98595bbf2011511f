"""Operations: ``/healthz`` (the process answers), ``/readyz`` (MongoDB, slurmrestd and
the poller are all right; public, so it names failing parts but no addresses), and
``/metrics`` (Prometheus; needs an API key like every other route)."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, g, jsonify, request

from .. import metrics
from ..errors import SlurmError, StoreUnavailable
from ..services import get_services
from ..store import utcnow

logger = logging.getLogger(__name__)
blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz():
    services = get_services()
    interval = services.config["SLURM_POLL_INTERVAL"]
    checks: dict[str, dict] = {}
    try:
        services.store.ping()
        checks["mongodb"] = {"ok": True, "embedded": bool(getattr(services.store, "is_embedded", False))}
    except StoreUnavailable as exc:
        logger.warning("readyz: %s", exc.message)
        checks["mongodb"] = {"ok": False, "error": exc.code}
    clusters = {}
    for name in services.slurm.names:
        client = services.slurm.get(name)
        try:
            pings = client.ping()
            up = bool(pings) and all(p.up for p in pings)
            clusters[name] = {"ok": up, "api_version": client.api_version,
                              **({} if up else {"error": "slurmctld_not_up"})}
        except SlurmError as exc:
            logger.warning("readyz: cluster %s: %s", name, exc.message)
            clusters[name] = {"ok": False, "error": exc.code}
    first = clusters[services.slurm.default]
    checks["slurmrestd"] = {**first, "ok": all(c["ok"] for c in clusters.values()),
                            "clusters": clusters}
    try:
        beat = services.store.last_beat("poller")
    except StoreUnavailable:
        beat = None
    leaders = {}
    for name in services.slurm.names:
        try:
            lease = services.store.lease(f"poller:{name}")
        except StoreUnavailable:
            lease = None
        live = lease is not None and lease["until"] >= utcnow()
        leaders[name] = lease["holder"] if live else None
    if beat is None:
        checks["poller"] = {"ok": False, "error": "no_heartbeat", "leaders": leaders}
    else:
        age = (utcnow() - beat["at"]).total_seconds()
        limit = 3 * max(interval, beat.get("interval", interval)) + 30
        checks["poller"] = {"ok": age <= limit, "last_cycle_seconds_ago": round(age, 1),
                            "leaders": leaders,
                            **({} if age <= limit else {"error": "heartbeat_stale"})}
    ready = all(c["ok"] for c in checks.values())
    return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), \
        200 if ready else 503


@blp.get("/metrics")
def metrics_endpoint():
    services = get_services()
    body, content_type = metrics.render(services.store, services.config["SLURM_POLL_INTERVAL"],
                                        services.slurm.names,
                                        services.config["PROMETHEUS_MULTIPROC_DIR"])
    return Response(body, content_type=content_type)


STATUS_OUTCOMES = {200: "ok", 400: "invalid", 401: "unauthorized", 403: "forbidden",
                   409: "duplicate", 413: "too_large", 429: "rate_limited",
                   502: "slurm_rejected", 503: "unavailable", 504: "slurm_timeout"}


def count_submit(status: int, started: float) -> None:
    """One ``POST /submit`` answered with ``status``, ``started`` at that monotonic time."""
    metrics.SUBMITS.labels(STATUS_OUTCOMES.get(status, "error")).inc()
    metrics.SUBMIT_SECONDS.observe(time.monotonic() - started)


def instrument(app) -> None:
    """Count submits by outcome, and their latency."""

    @app.before_request
    def _start_timer():
        g.started = time.monotonic()

    @app.after_request
    def _count_submit(response):
        if request.endpoint == "submit.submit":
            count_submit(response.status_code, g.get("started", time.monotonic()))
        return response
