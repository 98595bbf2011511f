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
import os
import re
import traceback

from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.ggevent import GeventWorker


class Logger(GunicornLogger):
    """gunicorn's logger, but with the access log off (``accesslog`` unset) no access
    line is built: gunicorn builds and formats one on every request whenever a logging
    config is given, as ours always is (app.logs.gunicorn_logconfig)."""

    def access(self, resp, req, environ, request_time):
        """gunicorn's access line, with only the atoms the format names computed (and
        quote-escaped as gunicorn's ``SafeAtoms`` does): gunicorn computes all 19, the
        time as text among them, and wraps every one, for each line."""
        if self.cfg.accesslog is None or not self.access_log_enabled:
            return
        log_format = self.cfg.access_log_format
        names = _atoms_named(log_format)
        if names is None:
            return super().access(resp, req, environ, request_time)
        try:
            self.access_log.info(log_format, _Atoms(
                (name, _escaped(_ATOMS[name](self, resp, environ, request_time)))
                for name in names))
        except Exception:  # noqa: BLE001 - as gunicorn: a line that fails is reported
            self.error(traceback.format_exc())


def _status(resp):
    status = resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _sent(resp):
    return getattr(resp, "sent", None)


# gunicorn's fixed atoms (gunicorn.glogging.Logger.atoms), one function each.
_ATOMS = {
    "h": lambda log, resp, env, took: env.get("REMOTE_ADDR", "-"),
    "l": lambda log, resp, env, took: "-",
    "u": lambda log, resp, env, took: log._get_user(env) or "-",
    "t": lambda log, resp, env, took: log.now(),
    "r": lambda log, resp, env, took: "%s %s %s" % (env["REQUEST_METHOD"], env["RAW_URI"],
                                                    env["SERVER_PROTOCOL"]),
    "s": lambda log, resp, env, took: _status(resp),
    "m": lambda log, resp, env, took: env.get("REQUEST_METHOD"),
    "U": lambda log, resp, env, took: env.get("PATH_INFO"),
    "q": lambda log, resp, env, took: env.get("QUERY_STRING"),
    "H": lambda log, resp, env, took: env.get("SERVER_PROTOCOL"),
    "b": lambda log, resp, env, took: _sent(resp) is not None and str(resp.sent) or "-",
    "B": lambda log, resp, env, took: _sent(resp),
    "f": lambda log, resp, env, took: env.get("HTTP_REFERER", "-"),
    "a": lambda log, resp, env, took: env.get("HTTP_USER_AGENT", "-"),
    "T": lambda log, resp, env, took: took.seconds,
    "D": lambda log, resp, env, took: took.seconds * 1000000 + took.microseconds,
    "M": lambda log, resp, env, took: took.seconds * 1000 + int(took.microseconds / 1000),
    "L": lambda log, resp, env, took: "%d.%06d" % (took.seconds, took.microseconds),
    "p": lambda log, resp, env, took: "<%s>" % os.getpid(),
}
_NAMED = re.compile(r"%\(([^)]*)\)")


@functools.lru_cache(maxsize=8)
def _atoms_named(log_format: str) -> tuple[str, ...] | None:
    """The fixed atoms a format names (any other name is "-", as in gunicorn's
    ``SafeAtoms``); None when it names a header or environ atom (``{...}i/o/e``):
    then gunicorn builds every atom itself."""
    if "{" in log_format:
        return None
    return tuple(name for name in dict.fromkeys(_NAMED.findall(log_format)) if name in _ATOMS)


def _escaped(value):
    return value.replace('"', '\\"') if isinstance(value, str) else value


class _Atoms(dict):
    """gunicorn's ``SafeAtoms`` for a dict already escaped: a missing atom is "-"."""

    def __missing__(self, key):
        return "-"


class Worker(GeventWorker):
    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        import gevent

        from .watch import close_all

        gevent.spawn(close_all)      # not in the signal handler itself
