"""The dispatcher on its own thread, with real peers: an SMTP server that hangs holds
up neither state tracking nor another peer's delivery."""
from __future__ import annotations

import threading
import time

from werkzeug import Response

from app.memory_store import MemoryTaskStore
from app.notify import build_notifiers
from app.poller import build_poller
from tests.conftest import make_job
from tests.helpers import PollSlurm, add_task
from tests.integration.peers import BlackHole, notify_config
from tests.integration.test_notify_e2e import until


def test_a_hanging_smtp_server_delays_neither_tracking_nor_the_webhook(httpserver):
    hole = BlackHole()                              # accepts, then never says a word
    hooks = []
    httpserver.expect_request("/hook").respond_with_handler(
        lambda r: hooks.append(time.monotonic()) or Response("", status=204))
    config = notify_config(smtp_port=hole.port, webhook_secret="dispatch-live-secret",
                           NOTIFICATIONS_TIMEOUT=20.0, SLURM_POLL_INTERVAL=0.2,
                           SLURM_POLL_INTERVAL_WITH_EVENTS=0.2)
    store, slurm = MemoryTaskStore(), PollSlurm()
    mailed = add_task(store, 1, methods=("email",))
    hooked = add_task(store, 2, methods=("webhook",), webhook_url=httpserver.url_for("/hook"))
    slurm.jobs[1] = make_job(1, "RUNNING")
    slurm.jobs[2] = make_job(2, "RUNNING")
    poller = build_poller(config, store=store, slurm=slurm, notifiers=build_notifiers(config))
    cycles = []              # per poll cycle: when it began, the webhook task's state after
    run_once = poller.run_once

    def counted(*args, **kwargs):
        started = time.monotonic()
        counts = run_once(*args, **kwargs)
        cycles.append((started, store.get(hooked)["slurm_job_state"]))
        return counts
    poller.run_once = counted
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        slurm.jobs[1] = make_job(1, "COMPLETED")
        assert hole.accepted.wait(10)               # the mail is being sent, and hangs
        until(lambda: store.get(mailed)["deliveries"][0]["status"] == "sending")
        slurm.jobs[2] = make_job(2, "FAILED", exit_code=1)
        ended = time.monotonic()
        until(lambda: store.get(hooked)["slurm_job_state"] == "FAILED", timeout=5, step=0.01)
        recorded = time.monotonic() - ended
        until(lambda: hooks, timeout=5, step=0.01)
        delivered = hooks[0] - ended
        until(lambda: any(state == "FAILED" for _, state in cycles), timeout=5, step=0.01)
        recording = next(i for i, (_, state) in enumerate(cycles) if state == "FAILED")
        first_after = next(i for i, (started, _) in enumerate(cycles) if started >= ended)
        # The mail hangs for its 20 s timeout all along; meanwhile the poller keeps its
        # pace: the job's end was recorded by the first cycle that began after it (or
        # one that began just before), and the webhook went out.
        assert store.get(mailed)["deliveries"][0]["status"] == "sending"
        assert recording <= first_after, (recording, first_after, cycles, ended)
        # On a quiet machine that is within one poll interval (0.2 s), and the webhook
        # within the dispatcher's 0.1 s look after (test_poll_cost checks that pace). A
        # loaded CI machine adds delays of its own, so the wall-clock bound here is only
        # far below the 20 s that waiting on the hung mail would take.
        assert recorded < 2.0 and delivered < 2.0, (recorded, delivered)
    finally:
        stop.set()
        hole.close()
        thread.join(5)
    assert store.get(hooked)["deliveries"][0]["status"] == "sent"
