"""HTTP to slurmrestd: one session per process, timeouts, retries, JWT headers.

Retries follow urllib3's defaults on purpose: connection errors (nothing reached
slurmrestd) are retried for every method; read errors and 502/503/504 only for
idempotent ones. So ``POST /job/submit`` is never sent twice once it may have
arrived. Exceptions leave this module as ``SlurmError`` subclasses only.
"""
from __future__ import annotations

import functools
import json as json_module
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlencode

import jwt
import urllib3
from urllib3.util.retry import Retry

from .. import metrics
from ..config import SlurmAuth
from ..errors import SlurmAuthError, SlurmTimeout, SlurmUnavailable

logger = logging.getLogger(__name__)

RETRY = dict(total=3, connect=3, read=2, status=2, backoff_factor=0.25,
             status_forcelist=(502, 503, 504), raise_on_status=False)


@dataclass
class Response:
    status: int
    body: Any            # parsed JSON, or the text when slurmrestd did not send JSON

    @property
    def json(self) -> dict:
        return self.body if isinstance(self.body, dict) else {}


class TokenSource:
    """Produces the ``X-SLURM-USER-*`` headers for a given user.

    mode "token": one token for root/SlurmUser, which may act as anyone through
    ``X-SLURM-USER-NAME``; a token file is re-read when it changes (rotation).
    mode "key": the cluster's HS256 key mints a short-lived token per user.
    """

    def __init__(self, auth: SlurmAuth):
        self.auth = auth
        self._lock = threading.Lock()
        self._minted: dict[str, tuple[str, float]] = {}
        self._file_token: tuple[float, str] | None = None

    def headers(self, user: str | None) -> dict[str, str]:
        user = user or self.auth.user_name
        return {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": self._token(user)}

    def _token(self, user: str) -> str:
        if self.auth.mode == "key":
            return self._mint(user)
        if self.auth.token_file:
            return self._read_file()
        return self.auth.token

    def _read_file(self) -> str:
        path = self.auth.token_file
        try:
            mtime = os.stat(path).st_mtime
            cached = self._file_token
            if cached is None or cached[0] != mtime:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read().strip()
                if text.startswith("SLURM_JWT="):
                    text = text.partition("=")[2]
                self._file_token = (mtime, text)
            return self._file_token[1]
        except OSError as exc:
            raise SlurmAuthError(f"The slurmrestd token file could not be read "
                                 f"({exc.__class__.__name__}).") from None

    def _mint(self, user: str) -> str:
        now = time.time()
        with self._lock:
            cached = self._minted.get(user)
            if cached and cached[1] - now > min(60, self.auth.lifespan / 2):
                return cached[0]
            exp = int(now) + self.auth.lifespan
            token = jwt.encode({"sun": user, "iat": int(now), "exp": exp},
                               self.auth.key, algorithm="HS256")
            self._minted[user] = (token, exp)
            return token


class OneWrite:
    """An urllib3 connection that sends a request's head and body in one write.

    http.client writes the head, then the body: two system calls and two packets on
    every submit, each waking slurmrestd (together about a tenth of the proxy's CPU
    per submit). The bytes sent are the same; connecting still happens inside
    ``request`` (on the first write), so urllib3 classifies errors as before."""

    _collected: list[bytes] | None = None

    def request(self, *args, **kwargs):
        self._collected = []
        try:
            super().request(*args, **kwargs)
            data = b"".join(self._collected)
        finally:
            self._collected = None
        if data:
            super().send(data)

    def send(self, data):
        if self._collected is None:
            super().send(data)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self._collected.append(bytes(data))
        else:                           # a file-like body: what was collected goes first
            pending, self._collected = b"".join(self._collected), []
            if pending:
                super().send(pending)
            super().send(data)


class OneWriteHTTPConnection(OneWrite, urllib3.connection.HTTPConnection):
    pass


class OneWriteHTTPSConnection(OneWrite, urllib3.connection.HTTPSConnection):
    pass


class Transport:
    """One urllib3 connection pool per process (after a fork too: gunicorn workers
    never share sockets). urllib3 directly, not ``requests``: a third of the proxy's
    CPU per submit went to ``requests``' session merging and request preparation
    (bench/submit.py), for one call whose shape never changes."""

    def __init__(self, base_url: str, auth: SlurmAuth, *, connect_timeout: float = 3.05,
                 read_timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.tokens = TokenSource(auth)
        self.timeout = (connect_timeout, read_timeout)
        self._urllib3_timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._retries = Retry(**RETRY)
        self._path_prefix = urllib3.util.parse_url(self.base_url).path or ""
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._pid = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> urllib3.HTTPConnectionPool:
        # Created lazily, and again after a fork (gunicorn workers): never shared.
        # One pool for slurmrestd's one address: urllib3's PoolManager would parse
        # the URL and look the pool up again on every request.
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    # No proxy settings are read from the environment: slurmrestd is a
                    # peer on the cluster network, and HTTP(S)_PROXY is for the outside.
                    pool = urllib3.PoolManager(
                        maxsize=32, block=False, retries=self._retries,
                        timeout=self._urllib3_timeout).connection_from_url(self.base_url)
                    pool.ConnectionCls = (OneWriteHTTPSConnection if pool.scheme == "https"
                                          else OneWriteHTTPConnection)
                    self._pool = pool
                    self._pid = os.getpid()
        return self._pool

    def request(self, method: str, path: str, *, user: str | None = None,
                json: Any = None, params: dict | None = None,
                decode: Callable[[bytes], Any] | None = None) -> Response:
        """One request. ``decode`` reads a JSON answer instead of ``json.loads`` (a job
        list, see ``versions.base.decode_job_list``); on any error ``json.loads`` does."""
        url = self._path_prefix + path
        if params:
            url += "?" + urlencode(params, safe=",")
        headers = self.tokens.headers(user)
        body = None
        if json is not None:
            body = json_module.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        outcome = "error"
        try:
            resp = self.pool.urlopen(method, url, body=body, headers=headers,
                                     redirect=False)
            outcome = f"{resp.status // 100}xx"
        except urllib3.exceptions.MaxRetryError as exc:
            raise self._failure(exc.reason, method, path) from None
        except urllib3.exceptions.HTTPError as exc:
            raise self._failure(exc, method, path) from None
        finally:
            requests_metric, seconds_metric = _metrics(method, outcome)
            requests_metric.inc()
            seconds_metric.observe(time.monotonic() - started)
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("slurmrestd %s %s -> %s in %.1f ms", method, path, resp.status, elapsed_ms)
        data = resp.data
        if "json" in (resp.headers.get("Content-Type") or ""):
            if decode is not None:
                try:
                    return Response(resp.status, decode(data))
                except Exception:  # noqa: BLE001 - json.loads decides what it was
                    pass
            try:
                return Response(resp.status, json_module.loads(data))
            except ValueError:
                pass
        return Response(resp.status, data.decode("utf-8", errors="replace"))

    def _failure(self, exc, method: str, path: str) -> Exception:
        """What a failed request means for the caller: never reached slurmrestd
        (unavailable), or reached it and got no answer in time (timeout: a submit
        may have happened)."""
        if isinstance(exc, urllib3.exceptions.NewConnectionError) or _never_connected(exc):
            return SlurmUnavailable(f"slurmrestd at {self.base_url} is not reachable "
                                    f"(connection refused or no route).")
        if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
            return SlurmUnavailable(f"slurmrestd at {self.base_url} did not accept a "
                                    f"connection within {self.timeout[0]} s.")
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            return SlurmTimeout(f"slurmrestd at {self.base_url} did not answer "
                                f"{method} {path} within {self.timeout[1]} s.")
        if isinstance(exc, (urllib3.exceptions.ProtocolError, OSError)):
            return SlurmTimeout(f"The connection to slurmrestd at {self.base_url} broke "
                                f"during {method} {path}.")
        return SlurmUnavailable(f"Request to slurmrestd failed: {exc.__class__.__name__}.")


@functools.lru_cache(maxsize=64)
def _metrics(method: str, outcome: str):
    """This request's counter and histogram: prometheus_client's ``labels()`` takes a
    lock and checks the labels on every call, for the same few pairs."""
    return metrics.SLURM_REQUESTS.labels(method, outcome), metrics.SLURM_SECONDS.labels(method)


def _never_connected(exc: Exception) -> bool:
    """True when the error happened before any byte of the request was sent."""
    text = repr(exc)
    return any(marker in text for marker in (
        "NewConnectionError", "NameResolutionError", "Failed to establish", "Connection refused"))
