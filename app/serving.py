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

import functools
from types import SimpleNamespace

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

    def atoms(self, resp, req, environ, request_time):
        """gunicorn's own atoms, computed from only what the format can use: gunicorn
        also turns every request header, response header and environ entry into an
        atom (and escapes each) for every line, which a format without ``{...}i/o/e``
        atoms never reads. Same values, same line."""
        if _needs_every_atom(self.cfg.access_log_format):
            return super().atoms(resp, req, environ, request_time)
        slim = {k: environ[k] for k in _ENVIRON_FOR_ATOMS if k in environ}
        status = SimpleNamespace(status=resp.status, sent=getattr(resp, "sent", None), headers=())
        return super().atoms(status, (), slim, request_time)


# The environ entries gunicorn's fixed atoms (h, u, r, m, U, q, H, f, a) are made from.
_ENVIRON_FOR_ATOMS = ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "SERVER_PROTOCOL", "PATH_INFO",
                      "QUERY_STRING", "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_AUTHORIZATION")


@functools.lru_cache(maxsize=8)
def _needs_every_atom(log_format: str) -> bool:
    return "{" in log_format


class Worker(GeventWorker):
    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        import gevent

        from .watch import close_all

        gevent.spawn(close_all)      # not in the signal handler itself
