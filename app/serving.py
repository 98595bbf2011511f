"""How gunicorn serves the app: gevent workers, so a request that waits (a ``?wait=``
long poll, an event stream) is a greenlet, not one of a few threads. A thousand
waiters then cost a thousand small greenlets and sockets, and ``/healthz`` or
``POST /submit`` are answered as fast as when nobody waits (``bench/waiters.py``).

``Worker`` is gunicorn's gevent worker plus one thing: at a graceful stop (SIGTERM)
it ends this process's waits and streams at once (``app.watch.close_all``), so they do
not hold the stop for ``graceful_timeout``. Long polls answer with the record as it
is; EventSource clients reconnect to another worker by themselves.
"""
from __future__ import annotations

from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.ggevent import GeventWorker


class Logger(GunicornLogger):
    """gunicorn's logger, but with the access log off (``accesslog`` unset) no access
    line is built: gunicorn builds and formats one on every request whenever a logging
    config is given, as ours always is (app.logs.gunicorn_logconfig)."""

    def access(self, resp, req, environ, request_time):
        if self.cfg.accesslog is None:
            return
        super().access(resp, req, environ, request_time)


class Worker(GeventWorker):
    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        import gevent

        from .watch import close_all

        gevent.spawn(close_all)      # not in the signal handler itself
