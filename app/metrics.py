"""Prometheus metrics, correct under several gunicorn workers and a separate poller.

Counters and histograms are written by whichever process counts them (web workers:
submits, slurmrestd calls; the poller: cycles, deliveries); with
PROMETHEUS_MULTIPROC_DIR set (supervisord sets it for both programs) prometheus_client
keeps them in files there and ``/metrics`` adds them up. What the store knows (active
tasks by state, the outbox backlog, how long ago the poller last finished a cycle) is
read from the store when ``/metrics`` is scraped, so it is right whichever process
answers.

PROMETHEUS_MULTIPROC_DIR is read twice: by prometheus_client itself, from the
environment, when it is first imported (it then writes its values to files there; no
setting can reach it that early), and by this service through ``config.py``, to add
the files up (``render``) and drop a dead worker's (``mark_process_dead``).
"""
from __future__ import annotations

import logging
import time

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SUBMITS = Counter("slurm_proxy_submits", "POST /submit requests by outcome", ["outcome"])
SUBMIT_SECONDS = Histogram("slurm_proxy_submit_seconds", "POST /submit latency",
                           buckets=LATENCY_BUCKETS)
SLURM_REQUESTS = Counter("slurm_proxy_slurmrestd_requests", "Requests to slurmrestd",
                         ["method", "outcome"])
SLURM_SECONDS = Histogram("slurm_proxy_slurmrestd_seconds", "slurmrestd request latency",
                          ["method"], buckets=LATENCY_BUCKETS)
POLL_SECONDS = Histogram("slurm_proxy_poll_cycle_seconds", "Duration of one poll cycle",
                         buckets=LATENCY_BUCKETS)
POLL_CYCLES = Counter("slurm_proxy_poll_cycles", "Poll cycles by outcome", ["outcome"])
STATE_CHANGES = Counter("slurm_proxy_state_changes", "Task state changes saved", ["state"])
AUTH_FAILURES = Counter("slurm_proxy_auth_failures", "Requests refused for a missing or "
                        "invalid API key", ["reason"])
ADDRESS_LIMITED = Counter("slurm_proxy_unauthenticated_limited", "Requests without a valid "
                          "key refused (429) by the per-address limit")
DELIVERIES = Counter("slurm_proxy_deliveries", "Notification attempts by method and outcome",
                     ["method", "outcome"])


class StoreCollector:
    """Gauges read from the store at scrape time."""

    def __init__(self, store, poll_interval: float, clusters=()):
        self.store, self.poll_interval, self.clusters = store, poll_interval, list(clusters)

    def collect(self):
        try:
            counts = self.store.count_active_by_state()
            backlog = self.store.count_outbox()
            beat = self.store.last_beat("poller")
            leases = {name: self.store.lease(f"poller:{name}") for name in self.clusters}
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on a store outage
            logger.warning("metrics: store unavailable (%s)", exc.__class__.__name__)
            up = GaugeMetricFamily("slurm_proxy_store_up", "Whether the store answered the scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("slurm_proxy_store_up", "Whether the store answered the scrape")
        up.add_metric([], 1)
        yield up
        active = GaugeMetricFamily("slurm_proxy_active_tasks", "Tasks not yet final, by state",
                                   labels=["state"])
        for state, n in sorted(counts.items()):
            active.add_metric([state], n)
        yield active
        outbox = GaugeMetricFamily("slurm_proxy_outbox_backlog",
                                   "Notifications waiting to be sent (pending or in flight)")
        outbox.add_metric([], backlog)
        yield outbox
        lag = GaugeMetricFamily("slurm_proxy_poll_lag_seconds",
                                "Seconds since the poller last finished a cycle (-1: never)")
        lag.add_metric([], time.time() - beat["at"].timestamp() if beat else -1)
        yield lag
        leader = GaugeMetricFamily("slurm_proxy_poller_leader",
                                   "1 for the poller holding a cluster's lease (its holder "
                                   "is host:pid:id); no sample while no poller leads",
                                   labels=["cluster", "holder"])
        for name, lease in leases.items():
            if lease is not None and lease["until"].timestamp() >= time.time():
                leader.add_metric([name, lease["holder"]], 1)
        yield leader


def render(store, poll_interval: float, clusters=(), directory: str = "") -> tuple[bytes, str]:
    """The exposition; ``directory``: PROMETHEUS_MULTIPROC_DIR (every process's values)."""
    registry = CollectorRegistry()
    if directory:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    output = generate_latest(registry)
    extra = CollectorRegistry()
    extra.register(StoreCollector(store, poll_interval, clusters))
    return output + generate_latest(extra), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int, directory: str) -> None:
    """gunicorn's child_exit hook: drop a dead worker's live gauges."""
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)
