"""Watching tasks without asking Slurm: waits (``?wait=``) and event streams.

What a waiter learns comes from what the tracker records in the store, never from
slurmrestd, so a thousand waiters cost the cluster nothing. Each process has one
``ChangeFeed`` that fans changes out to its local waiters:

- with MongoDB (several workers and a poller, maybe on several hosts), one watcher
  thread per process asks the store for "tasks changed since T" (an indexed query on
  ``updated_at``) at most every ``interval`` seconds, and only while someone waits;
- with the embedded store (one process), the store calls the feed on every change:
  no query at all.

Under gunicorn's gevent worker (the default, ``docker/gunicorn.conf.py``) a waiter is
a greenlet, not a thread, so waiting holds no worker thread either.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
import weakref
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator

from .states import FINAL_STATES
from .errors import StoreUnavailable
from .store import utcnow

logger = logging.getLogger(__name__)

# How far back each query looks again: covers a write whose updated_at was taken just
# before an earlier query but committed after it, and small clock skew between hosts.
OVERLAP = timedelta(seconds=5)
HEARTBEAT_SECONDS = 15.0
QUERY_LIMIT = 1000
_FEEDS: "weakref.WeakSet[ChangeFeed]" = weakref.WeakSet()


def is_final(state: str | None) -> bool:
    return state in FINAL_STATES


class Subscription:
    """One waiter's mailbox: the summaries of matching tasks as they change."""

    def __init__(self, uuid: str | None = None, users: Iterable[str] | None = None):
        self.uuid = uuid
        self.users = None if users is None else frozenset(users)
        self._events: collections.deque = collections.deque(maxlen=1000)
        self._ready = threading.Event()

    def matches(self, summary: dict[str, Any]) -> bool:
        task = summary.get("task") or {}
        if self.uuid is not None:
            return task.get("uuid") == self.uuid
        return self.users is None or task.get("username") in self.users

    def put(self, summary: dict[str, Any]) -> None:
        self._events.append(summary)
        self._ready.set()

    def wake(self) -> None:
        self._ready.set()

    def get(self, timeout: float) -> list[dict[str, Any]]:
        """The changes since the last call, waiting up to ``timeout`` for one."""
        self._ready.wait(max(0.0, timeout))
        self._ready.clear()
        out = []
        while self._events:
            out.append(self._events.popleft())
        return out


class ChangeFeed:
    def __init__(self, store, interval: float = 0.5, clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.interval = interval
        self.clock = clock
        self.closing = False
        self.queries = 0                 # store queries made (tests and the bench read it)
        self._lock = threading.Lock()
        self._by_uuid: dict[str, set[Subscription]] = {}
        self._broad: set[Subscription] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False
        self._recent: dict[tuple[str, Any], float] = {}
        _FEEDS.add(self)

    @property
    def waiters(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._by_uuid.values()) + len(self._broad)

    def subscribe(self, *, uuid: str | None = None,
                  users: Iterable[str] | None = None) -> Subscription:
        sub = Subscription(uuid, users)
        with self._lock:
            if uuid is not None:
                self._by_uuid.setdefault(uuid, set()).add(sub)
            else:
                self._broad.add(sub)
            self._start_locked()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub.uuid is not None:
                subs = self._by_uuid.get(sub.uuid)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._by_uuid[sub.uuid]
            else:
                self._broad.discard(sub)

    def _start_locked(self) -> None:
        if hasattr(self.store, "add_listener"):          # the embedded store signals us
            if not self._listening:
                self.store.add_listener(self.publish)
                self._listening = True
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
            self._thread.start()
        self._wake.set()

    def publish(self, summary: dict[str, Any]) -> None:
        """Hand one task's new summary to every local waiter it concerns."""
        uuid = (summary.get("task") or {}).get("uuid")
        with self._lock:
            targets = list(self._by_uuid.get(uuid, ()))
            targets += [s for s in self._broad if s.matches(summary)]
        for sub in targets:
            sub.put(summary)

    def close(self) -> None:
        """End every wait and stream of this process now (graceful stop)."""
        self.closing = True
        self._stop.set()
        self._wake.set()
        with self._lock:
            subs = [s for group in self._by_uuid.values() for s in group] + list(self._broad)
        for sub in subs:
            sub.wake()

    # -- the watcher (MongoDB) --------------------------------------------------------
    def _idle(self) -> bool:
        with self._lock:
            return not (self._by_uuid or self._broad)

    def _run(self) -> None:
        since = self.clock()
        failures = 0
        while not self._stop.is_set():
            if self._idle():
                self._wake.clear()
                if self._idle():                  # nobody waits: no query at all
                    self._wake.wait()
                    since = self.clock()
                    continue
            started = time.monotonic()
            now = self.clock()
            try:
                rows = self.store.changes_since(since - OVERLAP, limit=QUERY_LIMIT)
                self.queries += 1
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                if failures == 1:
                    logger.warning("change feed: %s; waiters keep waiting", exc.message)
                rows = None
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad answer
                logger.exception("change feed query failed")
                rows = None
            if rows is not None:
                since = (rows[-1]["updated_at"] + OVERLAP) if len(rows) >= QUERY_LIMIT else now
                self._deliver(rows)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _deliver(self, rows: list[dict[str, Any]]) -> None:
        horizon = time.monotonic() - 3 * OVERLAP.total_seconds() - self.interval
        self._recent = {k: t for k, t in self._recent.items() if t >= horizon}
        for row in rows:
            key = (row["task"]["uuid"], row.get("updated_at"))
            if key in self._recent:
                continue
            self._recent[key] = time.monotonic()
            self.publish(row)


def close_all() -> None:
    """End the waits and streams of every feed in this process (gunicorn's graceful
    stop; ``app.serving``)."""
    for feed in list(_FEEDS):
        feed.close()


# -- what the endpoints use -----------------------------------------------------------
def wait_until_final(feed: ChangeFeed, store, record: dict[str, Any],
                     seconds: float) -> dict[str, Any]:
    """The task's record once its state is final, or after ``seconds``: woken by the
    feed, reading the store once at the end, never Slurm."""
    uuid = record["task"]["uuid"]
    if is_final(record["slurm_job_state"]):
        return record
    sub = feed.subscribe(uuid=uuid)
    try:
        record = store.get(uuid) or record        # a change between read and subscribe
        deadline = time.monotonic() + seconds
        while not is_final(record["slurm_job_state"]) and not feed.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            events = sub.get(remaining)
            if any(is_final(e.get("slurm_job_state")) for e in events):
                record = store.get(uuid) or record
    finally:
        feed.unsubscribe(sub)
    return record


def event_of(summary: dict[str, Any]) -> dict[str, Any]:
    task = summary.get("task") or {}
    return {"uuid": task.get("uuid"), "name": task.get("name"), "username": task.get("username"),
            "slurm_job_id": summary.get("slurm_job_id"),
            "slurm_job_state": summary.get("slurm_job_state"),
            "final": is_final(summary.get("slurm_job_state")),
            "exit_code": summary.get("exit_code"), "signal": summary.get("signal"),
            "created_at": summary.get("created_at"), "updated_at": summary.get("updated_at"),
            "end_time": summary.get("end_time")}


def _millis(value: Any) -> int | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    return None


def parse_last_event_id(value: str | None) -> datetime | None:
    """An event id is its change's ``updated_at`` in milliseconds."""
    if not value or not value.isdigit() or len(value) > 15:
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)


def sse(summary: dict[str, Any], dumps: Callable[[Any], str]) -> str:
    """The message for one change, made once however many streams send it (the feed
    hands every waiter the same summary)."""
    cached = summary.get("_sse")
    if cached is None:
        millis = _millis(summary.get("updated_at"))
        cached = ("event: state\n" + (f"id: {millis}\n" if millis is not None else "")
                  + f"data: {dumps(event_of(summary))}\n\n")
        summary["_sse"] = cached
    return cached


def stream(feed: ChangeFeed, sub: Subscription, initial: list[dict[str, Any]], *,
           dumps: Callable[[Any], str] = json.dumps, end_when_final: bool,
           max_seconds: float, heartbeat: float = HEARTBEAT_SECONDS) -> Iterator[str]:
    """Server-sent events: ``event: state`` per change (the current state first), a
    comment every ``heartbeat`` seconds (so a dead client is noticed), ``event: end``
    when a single task is final. Ends after ``max_seconds`` or on graceful stop (the
    client reconnects, EventSource by itself)."""
    sent: dict[str, Any] = {}

    def fresh(summary) -> bool:
        uuid = (summary.get("task") or {}).get("uuid")
        mark = (summary.get("updated_at"), summary.get("slurm_job_state"))
        if sent.get(uuid) == mark:
            return False
        sent[uuid] = mark
        return True

    try:
        yield "retry: 2000\n\n"
        for summary in initial:
            if fresh(summary):
                yield sse(summary, dumps)
            if end_when_final and is_final(summary.get("slurm_job_state")):
                yield "event: end\ndata: {}\n\n"
                return
        deadline = time.monotonic() + max_seconds
        while not feed.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            events = sub.get(min(heartbeat, remaining))
            if not events:
                yield ": keepalive\n\n"
                continue
            for summary in events:
                if fresh(summary):
                    yield sse(summary, dumps)
                if end_when_final and is_final(summary.get("slurm_job_state")):
                    yield "event: end\ndata: {}\n\n"
                    return
    finally:
        feed.unsubscribe(sub)


def open_stream(services, *, uuid: str | None = None, users: Iterable[str] | None = None,
                since: datetime | None = None, dumps: Callable[[Any], str] = json.dumps
                ) -> Iterator[str]:
    """The event stream of one task (``uuid``, from its current state until it is
    final) or of every task of ``users`` (None: all), replaying changes after
    ``since`` (the Last-Event-ID a reconnecting client sends). The caller has checked
    that the key may see them."""
    feed, store = services.feed, services.store
    max_seconds = services.config["SLURM_PROXY_STREAM_MAX_SECONDS"]

    def generate():
        sub = feed.subscribe(uuid=uuid, users=users)
        try:
            if uuid is not None:
                current = store.get(uuid)
                initial = [current] if current else []
            else:
                initial = ([r for r in store.changes_since(since, limit=QUERY_LIMIT) if sub.matches(r)]
                           if since else [])
        except BaseException:
            feed.unsubscribe(sub)
            raise
        yield from stream(feed, sub, initial, dumps=dumps, end_when_final=uuid is not None,
                          max_seconds=max_seconds)

    return generate()
