"""The dispatcher: sends due deliveries from the tasks' outboxes and records each outcome.

A delivery is claimed before it is sent (compare-and-set to ``sending`` with a lease),
so two dispatchers never send it both; if a sender dies mid-send, the lease runs out
and the delivery is sent again with the same id, which receivers use to drop the
repeat. Failures are retried with exponential backoff and jitter up to
NOTIFICATIONS_MAX_ATTEMPTS; an error that retrying cannot fix fails at once.

``run(stop)`` is the dispatcher's own loop, on its own thread next to the poller's: it
looks at the outbox every ``tick`` (0.1 s; an indexed query that reads nothing when
nothing is due) or at once when ``wake()`` is called, and hands each due delivery to a
pool of NOTIFICATIONS_CONCURRENCY sender threads, at most NOTIFICATIONS_PER_PEER at a
time to one peer (one SMTP server, one webhook host...). A peer that hangs until its
timeout holds up only its own deliveries, never state tracking or other peers.
``run_once()`` sends what is due now, one by one (tests, one-shot use).
"""
from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .. import metrics
from ..errors import NotificationError, StoreUnavailable
from ..store import utcnow
from .base import Notifier, PermanentNotificationError
from .message import build_event

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, store, notifiers: Mapping[str, Notifier], *, max_attempts: int = 8,
                 backoff: float = 5.0, backoff_max: float = 3600.0, lease: float = 120.0,
                 batch: int = 100, clock: Callable[[], datetime] = utcnow,
                 rng: Callable[[], float] = random.random, concurrency: int = 16,
                 per_peer: int = 4, drain: float = 15.0):
        self.store, self.notifiers = store, dict(notifiers)
        self.max_attempts, self.backoff, self.backoff_max = max_attempts, backoff, backoff_max
        self.lease, self.batch, self.clock, self.rng = lease, batch, clock, rng
        self.concurrency, self.per_peer, self.drain = concurrency, per_peer, drain
        self._wake = threading.Event()
        self._in_flight: dict[str, str] = {}        # delivery id -> peer
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)    # notified when a send ends

    @classmethod
    def from_config(cls, store, notifiers, config: Mapping[str, Any], **kwargs) -> "Dispatcher":
        return cls(store, notifiers, max_attempts=config["NOTIFICATIONS_MAX_ATTEMPTS"],
                   backoff=config["NOTIFICATIONS_BACKOFF_SECONDS"],
                   backoff_max=config["NOTIFICATIONS_BACKOFF_MAX_SECONDS"],
                   lease=config["NOTIFICATIONS_LEASE_SECONDS"],
                   concurrency=config["NOTIFICATIONS_CONCURRENCY"],
                   per_peer=config["NOTIFICATIONS_PER_PEER"],
                   drain=config["NOTIFICATIONS_TIMEOUT"] + 5.0, **kwargs)

    def delay(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: exponential, with jitter in [½, 1]."""
        base = min(self.backoff_max, self.backoff * 2 ** (attempts - 1))
        return base * (0.5 + self.rng() / 2)

    def run_once(self) -> dict[str, int]:
        counts = {"sent": 0, "retry": 0, "failed": 0}
        now = self.clock()
        for uuid, delivery in self.store.due_deliveries(now, self.batch):
            try:
                outcome = self._deliver(uuid, delivery, now)
            except StoreUnavailable as exc:
                logger.warning("outbox unavailable: %s", exc.message)
                break
            if outcome:
                counts[outcome] += 1
                metrics.DELIVERIES.labels(delivery["method"], outcome).inc()
        return counts

    # -- the loop ------------------------------------------------------------------
    def wake(self) -> None:
        """Look at the outbox now (something was queued in this process)."""
        self._wake.set()

    @staticmethod
    def peer(delivery: Mapping[str, Any]) -> str:
        """Who a delivery talks to: the webhook's host, else the method's one server."""
        if delivery["method"] == "webhook":
            return "webhook:" + (urlsplit(str(delivery["target"])).netloc or "?")
        return delivery["method"]

    def run(self, stop: threading.Event, tick: float = 0.1) -> None:
        logger.info("dispatcher started: %d senders, %d per peer", self.concurrency, self.per_peer)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="deliver")
        while not stop.is_set():
            try:
                self.start_due(pool)
            except StoreUnavailable as exc:
                logger.warning("outbox unavailable: %s", exc.message)
            except Exception:  # noqa: BLE001 - the only catch-all: keep sending
                logger.exception("dispatcher pass failed")
            self._wake.wait(tick)
            self._wake.clear()
        # Queued sends are dropped unclaimed; sends in flight get up to ``drain``
        # seconds (their own timeout and a little) to finish and record their
        # outcome, so a clean stop never leaves a delivered message to be sent again.
        pool.shutdown(wait=False, cancel_futures=True)
        with self._idle:
            if not self._idle.wait_for(lambda: not self._in_flight, timeout=self.drain):
                logger.warning("dispatcher stopped with %d send(s) in flight; they are "
                               "sent again after their lease", len(self._in_flight))
        logger.info("dispatcher stopped")

    def start_due(self, pool) -> int:
        """Hand the due deliveries to ``pool`` within the bounds; returns how many."""
        started = 0
        now = self.clock()
        for uuid, delivery in self.store.due_deliveries(now, max(self.batch, 5 * self.concurrency)):
            peer = self.peer(delivery)
            with self._lock:
                if delivery["id"] in self._in_flight:
                    continue
                if len(self._in_flight) >= self.concurrency:
                    break
                if sum(1 for p in self._in_flight.values() if p == peer) >= self.per_peer:
                    continue
                self._in_flight[delivery["id"]] = peer
            pool.submit(self._send_one, uuid, delivery, now)
            started += 1
        return started

    def _send_one(self, uuid: str, delivery: dict[str, Any], now: datetime) -> None:
        try:
            outcome = self._deliver(uuid, delivery, now)
            if outcome:
                metrics.DELIVERIES.labels(delivery["method"], outcome).inc()
        except StoreUnavailable as exc:
            logger.warning("outbox unavailable: %s", exc.message)
        except Exception:  # noqa: BLE001 - a sender thread must report, not die silently
            logger.exception("delivery %s of task_uuid=%s failed", delivery["id"], uuid)
        finally:
            with self._lock:
                self._in_flight.pop(delivery["id"], None)
                self._idle.notify_all()
            self._wake.set()                 # a slot is free: start what waits for it

    def _deliver(self, uuid: str, delivery: dict[str, Any], now: datetime) -> str | None:
        lease_until = now + timedelta(seconds=self.lease)
        if not self.store.claim_delivery(uuid, delivery, lease_until=lease_until):
            return None                         # another dispatcher has it
        attempt = delivery["attempts"] + 1
        record = self.store.get(uuid)
        method, target = delivery["method"], delivery["target"]
        notifier = self.notifiers.get(method)
        shown = notifier.redact(target) if notifier else Notifier.redact(target)
        where = (f"task_uuid={uuid} slurm_job_id={record.get('slurm_job_id')} "
                 f"delivery={delivery['id']} method={method} target={shown}")
        try:
            if notifier is None:
                raise PermanentNotificationError(f"method {method} is not configured on this server")
            params = (record["task"].get("notification") or {}).get("params", {}).get(method, {})
            notifier.send(build_event(record, delivery), params, target, delivery["id"])
        except PermanentNotificationError as exc:
            return self._finish(uuid, delivery, "failed", exc.message, where, attempt)
        except NotificationError as exc:
            return self._retry_or_fail(uuid, delivery, exc.message, where, attempt)
        except Exception as exc:  # noqa: BLE001 - a plugin bug must not stop the others
            logger.exception("notifier %s crashed %s", method, where)
            return self._retry_or_fail(uuid, delivery, f"internal error: {exc.__class__.__name__}",
                                       where, attempt)
        self.store.finish_delivery(uuid, delivery["id"], {
            "status": "sent", "sent_at": self.clock(), "last_error": None, "next_at": None})
        logger.info("notification sent %s state=%s attempt=%d", where, delivery["state"], attempt)
        return "sent"

    def _retry_or_fail(self, uuid, delivery, error, where, attempt) -> str:
        if attempt >= self.max_attempts:
            return self._finish(uuid, delivery, "failed", error, where, attempt)
        next_at = self.clock() + timedelta(seconds=self.delay(attempt))
        self.store.finish_delivery(uuid, delivery["id"], {
            "status": "pending", "next_at": next_at, "last_error": error})
        logger.warning("notification failed %s attempt=%d, retry at %s: %s",
                       where, attempt, next_at.isoformat(timespec="seconds"), error)
        return "retry"

    def _finish(self, uuid, delivery, status, error, where, attempt) -> str:
        self.store.finish_delivery(uuid, delivery["id"], {
            "status": status, "next_at": None, "last_error": error})
        logger.error("notification given up %s after %d attempt(s): %s", where, attempt, error)
        return "failed"
