"""HTTP to slurmrestd: keep-alive connections per process (``connections``), timeouts,
retries, JWT headers.

Retries follow urllib3's defaults on purpose (its ``Retry`` still decides them): connection errors (nothing reached
slurmrestd) are retried for every method; read errors and 502/503/504 only for
idempotent ones. So ``POST /job/submit`` is never sent twice once it may have
arrived. Exceptions leave this module as ``SlurmError`` subclasses only.
"""
from __future__ import annotations

import functools
import json as json_module
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from http.client import InvalidURL
from urllib.parse import urlencode

import jwt
import urllib3
from urllib3.util.retry import Retry

from .. import metrics
from ..config import SlurmAuth
from ..errors import SlurmAuthError, SlurmTimeout, SlurmUnavailable
from .connections import Pool

logger = logging.getLogger(__name__)

RETRY = dict(total=3, connect=3, read=2, status=2, backoff_factor=0.25,
             status_forcelist=(502, 503, 504), raise_on_status=False)
USER_AGENT = "slurm-proxy"
# What http.client refused in a request target: control characters and spaces.
_NOT_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")


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


class Transport:
    """HTTP to one slurmrestd: keep-alive connections (``connections.Pool``, created
    lazily and again after a fork, so gunicorn workers never share sockets), each
    request built here as bytes and sent in one write, and urllib3's ``Retry`` deciding
    what is retried. Neither ``requests`` (a third of the proxy's CPU per submit once)
    nor urllib3's pool and http.client (a quarter, later) for one call whose shape
    never changes."""

    def __init__(self, base_url: str, auth: SlurmAuth, *, connect_timeout: float = 3.05,
                 read_timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.tokens = TokenSource(auth)
        self.timeout = (connect_timeout, read_timeout)
        self._retries = Retry(**RETRY)
        url = urllib3.util.parse_url(self.base_url)
        self._scheme = (url.scheme or "http").lower()
        self._host = url.host or "localhost"
        self._port = url.port or (443 if self._scheme == "https" else 80)
        self._path_prefix = url.path or ""
        # What http.client sent: the port only when it is not the scheme's own.
        host = f"[{self._host}]" if ":" in self._host else self._host
        if url.port and url.port != (443 if self._scheme == "https" else 80):
            host = f"{host}:{url.port}"
        self._head_start = (f" HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"
                            f"User-Agent: {USER_AGENT}\r\n")
        self._pool: Pool | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> Pool:
        # Created lazily (no I/O in create_app); Pool itself starts empty after a fork.
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = Pool(self._scheme, self._host, self._port,
                                      connect_timeout=self.timeout[0],
                                      read_timeout=self.timeout[1])
        return self._pool

    def request(self, method: str, path: str, *, user: str | None = None,
                json: Any = None, params: dict | None = None,
                decode: Callable[[bytes], Any] | None = None) -> Response:
        """One request. ``decode`` reads a JSON answer instead of ``json.loads`` (a job
        list, see ``versions.base.decode_job_list``); on any error ``json.loads`` does."""
        target = self._path_prefix + path
        if params:
            target += "?" + urlencode(params, safe=",")
        if _NOT_IN_TARGET.search(target):
            raise InvalidURL(f"URL can't contain control characters or spaces: {target!r}")
        data = self._build(method, target, self.tokens.headers(user), json)
        started = time.monotonic()
        outcome = "error"
        try:
            resp = self._send(method, target, data)
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
        try:
            return self._read(resp, decode)
        finally:
            resp.release()

    @staticmethod
    def _read(resp, decode: Callable[[bytes], Any] | None) -> Response:
        """The answer's body, read before its buffer is released: ``decode`` must
        keep nothing that points into it (``decode_job_list`` copies what it keeps)."""
        data = resp.data
        if "json" in (resp.headers.get("content-type") or ""):
            if decode is not None:
                try:
                    return Response(resp.status, decode(data))
                except Exception:  # noqa: BLE001 - json.loads decides what it was
                    pass
            try:
                return Response(resp.status, json_module.loads(bytes(data)))
            except ValueError:
                pass
        return Response(resp.status, str(data, "utf-8", errors="replace"))

    def _build(self, method: str, target: str, headers: dict[str, str], json: Any) -> bytes:
        """The whole request as one bytes object: the head http.client wrote (Host,
        Accept-Encoding, and Content-Length for a body or a bodiless POST/PUT/PATCH, as
        urllib3 added it), our headers, then the body."""
        body = b"" if json is None else json_module.dumps(json).encode()
        lines = [method, " ", target, self._head_start]
        if body or method in ("POST", "PUT", "PATCH"):
            lines += ("Content-Length: ", str(len(body)), "\r\n")
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"Invalid value for header {name}")      # never the value
            lines += (name, ": ", value, "\r\n")
        if json is not None:
            lines.append("Content-Type: application/json\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1") + body

    def _send(self, method: str, target: str, data: bytes):
        """The exchange, retried as urllib3's ``urlopen`` retried it with the same
        ``Retry``: on errors ``Retry.increment`` re-raises what may not be retried (a
        read error on a POST) and raises ``MaxRetryError`` when retries run out; an
        answer in ``status_forcelist`` to an idempotent request is asked again, and the
        last one returned when retries run out (``raise_on_status=False``)."""
        retries = self._retries
        pool = self.pool
        while True:
            try:
                answer = pool.exchange(method, target, data)
            except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                    urllib3.exceptions.SSLError, urllib3.exceptions.ReadTimeoutError,
                    urllib3.exceptions.ProtocolError) as exc:
                retries = retries.increment(method, target, error=exc)
                retries.sleep()
                logger.warning("slurmrestd %s %s: retrying (%r) after %r", method,
                               target.partition("?")[0], retries, exc)
                continue
            if retries.is_retry(method, answer.status, bool(answer.headers.get("retry-after"))):
                try:
                    retries = retries.increment(method, target, response=answer)
                except urllib3.exceptions.MaxRetryError:
                    return answer
                retries.sleep(answer)
                continue
            return answer

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
