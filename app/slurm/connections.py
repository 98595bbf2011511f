"""HTTP/1.1 to slurmrestd, by hand: keep-alive connections in a pool, each request in
one write, each answer parsed here.

Why not urllib3 and http.client: for the one call a submit makes, they were about a
quarter of the web worker's CPU (bench/submit.py, py-spy), much of it http.client
parsing a three-line header through the ``email`` package, urllib3's pool checking a
pooled connection through a ``poll`` object, and the response wrappers. Here a
request is one ``sendall`` of bytes built in transport.py, and an answer is its status
line, its headers (``Content-Length``, ``Transfer-Encoding: chunked``, ``Connection``)
and its body, read with ``recv``/``recv_into``.

What the transport decides (retries) stays with urllib3's ``Retry``: every failure is
raised here as the urllib3 exception urllib3 itself raised for it, so that the same
``Retry`` makes the same decisions: connection errors (nothing was sent) are retried
for every method; read errors, an answer cut short and a broken connection only for
idempotent ones. A ``POST`` is never sent twice once any byte of it may have reached
slurmrestd.

Thread- and gevent-safe: a connection is used by one request at a time, taken from
and given back to the pool (``list.pop``/``append``, atomic); a new process (a fork)
starts with an empty pool.
"""
from __future__ import annotations

import os
import socket
import ssl

from urllib3.exceptions import (ConnectTimeoutError, NameResolutionError, NewConnectionError,
                                ProtocolError, ReadTimeoutError, SSLError)

MAX_IDLE = 32            # connections kept open between requests (urllib3's maxsize was 32)
MAX_LINE = 65536         # a status or header line longer than this is not slurmrestd
MAX_HEADERS = 100
RECV = 65536
BIG_BODY = 1 << 20       # a body this long or longer is read into the pool's body buffer


class Headers(dict):
    """An answer's headers, names lower-cased; ``get`` takes any case (urllib3's
    ``Retry`` asks for ``Retry-After``). A repeated header's values are joined by ", "."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class Answer:
    """slurmrestd's answer: status, headers and the whole body. A big body is a view
    of its pool's body buffer (``Bodies``): call ``release`` once done with ``data``."""

    __slots__ = ("status", "headers", "data", "_bodies", "_buffer")

    def __init__(self, status: int, headers: Headers, data: bytes | bytearray | memoryview,
                 bodies: "Bodies | None" = None, buffer: bytearray | None = None):
        self.status, self.headers, self.data = status, headers, data
        self._bodies, self._buffer = bodies, buffer

    def get_redirect_location(self):
        """For urllib3's ``Retry``: redirects are never followed."""
        return False

    def release(self) -> None:
        """``data`` will not be read again: its buffer may carry the next big body."""
        if self._buffer is not None:
            self.data.release()
            self._bodies.give_back(self._buffer)
            self._buffer = None


class Bodies:
    """One buffer kept for big bodies (a job list: megabytes) between requests.

    Memory the process has not touched yet costs a page fault per 4 kB when first
    written: receiving a 59 MB job list into a new ``bytearray`` took longer than all
    the rest of reading it (bench/poll.py, 10,000 jobs). The buffer is kept with a
    margin, so a list that grows a little still fits; taking and giving it back are
    ``list.pop``/``append`` (atomic), so two requests at once never share it (the
    second gets a buffer of its own)."""

    def __init__(self):
        self._spare: list[bytearray] = []

    def take(self, n: int) -> bytearray:
        try:
            buffer = self._spare.pop()
        except IndexError:
            buffer = None
        if buffer is None or len(buffer) < n:
            buffer = bytearray(n + n // 8)
        return buffer

    def give_back(self, buffer: bytearray) -> None:
        if not self._spare:
            self._spare.append(buffer)


class Malformed(Exception):
    """The peer does not speak HTTP/1.x as expected (or the answer was cut short)."""


class Reader:
    """Buffered reads from one socket."""

    __slots__ = ("sock", "buf", "pos")

    def __init__(self, sock):
        self.sock, self.buf, self.pos = sock, bytearray(), 0

    def _fill(self) -> None:
        chunk = self.sock.recv(RECV)
        if not chunk:
            raise EOFError
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += chunk

    def line(self) -> bytes:
        while (end := self.buf.find(b"\n", self.pos)) < 0:
            if len(self.buf) - self.pos > MAX_LINE:
                raise Malformed("header line too long")
            self._fill()
        line = bytes(self.buf[self.pos:end])
        self.pos = end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def exactly(self, n: int) -> bytearray:
        """The next ``n`` bytes (received straight into the result when many)."""
        out = bytearray(n)
        self.into(memoryview(out))
        return out

    def into(self, view: memoryview) -> None:
        """Fill ``view`` with the next bytes."""
        n = len(view)
        have = min(n, len(self.buf) - self.pos)
        view[:have] = self.buf[self.pos:self.pos + have]
        self.pos += have
        while have < n:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise Malformed(f"IncompleteRead({have} bytes read, {n - have} more expected)")
            have += got

    def rest(self) -> bytearray:
        """Everything until the peer closes the connection."""
        out = self.buf[self.pos:]
        self.buf, self.pos = bytearray(), 0
        while chunk := self.sock.recv(RECV):
            out += chunk
        return out

    @property
    def pending(self) -> bool:
        return len(self.buf) > self.pos


def read_answer(sock, method: str, bodies: Bodies | None = None) -> tuple[Answer, bool]:
    """One answer from ``sock``: (the answer, whether the connection may be reused). A
    body of ``BIG_BODY`` or more is read into a buffer of ``bodies``, when given."""
    reader = Reader(sock)
    buffer = None
    try:
        while True:
            status_line = reader.line()
            version, _, rest = status_line.partition(b" ")
            code = rest[:3]
            if not (version.startswith(b"HTTP/1.") and len(code) == 3 and code.isdigit()):
                raise Malformed(f"BadStatusLine({status_line[:80]!r})")
            status = int(code)
            headers = _read_headers(reader)
            if not 100 <= status < 200 or status == 101:
                break                       # 1xx (100 Continue): the real answer follows
    except EOFError:
        raise Malformed("RemoteDisconnected('Remote end closed connection without "
                        "response')") from None
    connection = (headers.get("connection") or "").lower()
    reusable = ("close" not in connection if version == b"HTTP/1.1"
                else "keep-alive" in connection)
    try:
        if method == "HEAD" or status in (204, 304) or status < 200:
            data = b""
        elif "chunked" in (headers.get("transfer-encoding") or "").lower():
            data = _read_chunked(reader)
        elif (length := headers.get("content-length")) is not None:
            try:
                size = int(length)
            except ValueError:
                raise Malformed(f"invalid Content-Length {length[:40]!r}") from None
            if size < 0:
                raise Malformed(f"invalid Content-Length {length[:40]!r}")
            if bodies is not None and size >= BIG_BODY:
                buffer = bodies.take(size)
                data = memoryview(buffer)[:size]
                reader.into(data)
            else:
                data = reader.exactly(size)
        else:
            data = reader.rest()
            reusable = False
    except EOFError:
        raise Malformed("IncompleteRead: the connection closed inside the body") from None
    if reader.pending:                      # bytes nobody asked for: never reuse this one
        reusable = False
    return Answer(status, headers, data, bodies, buffer), reusable


def _read_headers(reader: Reader) -> Headers:
    headers = Headers()
    name = None
    for _ in range(MAX_HEADERS + 1):
        line = reader.line()
        if not line:
            return headers
        if line[:1] in (b" ", b"\t") and name is not None:      # obsolete line folding
            headers[name] += " " + line.strip().decode("latin-1")
            continue
        raw, sep, value = line.partition(b":")
        if not sep:
            raise Malformed(f"header line without a colon: {line[:80]!r}")
        name = raw.strip().decode("latin-1").lower()
        value = value.strip().decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raise Malformed(f"more than {MAX_HEADERS} headers")


def _read_chunked(reader: Reader) -> bytearray:
    out = bytearray()
    while True:
        size_line = reader.line()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Malformed(f"invalid chunk size {size_line[:40]!r}") from None
        if size < 0:
            raise Malformed(f"invalid chunk size {size_line[:40]!r}")
        if size == 0:
            break
        out += reader.exactly(size)
        if reader.line():
            raise Malformed("a chunk longer than its size")
    while reader.line():                    # trailers, up to the empty line
        pass
    return out


class Pool:
    """Keep-alive connections to one slurmrestd (``scheme://host:port``)."""

    def __init__(self, scheme: str, host: str, port: int, *, connect_timeout: float,
                 read_timeout: float):
        self.scheme, self.host, self.port = scheme, host, port
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._tls = _tls_context() if scheme == "https" else None
        self._idle: list = []
        self.bodies = Bodies()
        self._pid = os.getpid()

    def __repr__(self):
        return f"<connection to {self.scheme}://{self.host}:{self.port}>"

    def exchange(self, method: str, target: str, data: bytes) -> Answer:
        """Send ``data`` (one whole request) and read the answer. Raises urllib3's
        exceptions: ``NewConnectionError``/``ConnectTimeoutError``/``SSLError`` before
        anything was sent, ``ReadTimeoutError``/``ProtocolError`` after."""
        sock = self._checkout()
        try:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass        # as http.client: slurmrestd may have answered; reading tells
            answer, reusable = read_answer(sock, method, self.bodies)
        except TimeoutError as exc:
            sock.close()
            raise ReadTimeoutError(self, target, f"Read timed out. (read timeout="
                                                 f"{self.read_timeout})") from exc
        except (OSError, Malformed) as exc:        # ssl.SSLError too: never resent
            sock.close()
            raise ProtocolError("Connection aborted.", exc) from exc
        except BaseException:
            sock.close()
            raise
        if reusable and self._pid == os.getpid() and len(self._idle) < MAX_IDLE:
            self._idle.append(sock)
        else:
            sock.close()
        return answer

    def _checkout(self):
        if self._pid != os.getpid():             # a forked child never shares a socket
            self._idle, self._pid = [], os.getpid()
        while self._idle:
            try:
                sock = self._idle.pop()
            except IndexError:
                break
            if is_open(sock):
                return sock
            sock.close()
        return self.connect()

    def connect(self):
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                            f"(connect timeout={self.connect_timeout})") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:        # the handshake, within the connect timeout
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(self, f"TLS handshake with {self.host} timed out. "
                                            f"(connect timeout={self.connect_timeout})") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            sock.close()
            raise SSLError(exc) from exc
        except OSError as exc:
            sock.close()
            raise ProtocolError("Connection aborted.", exc) from exc
        return sock


def is_open(sock) -> bool:
    """Whether a pooled connection may carry a request: slurmrestd has not closed it
    and sent nothing unasked. One non-blocking read of the descriptor (a socket with
    a timeout is non-blocking underneath, under gevent too), where urllib3 built a
    ``poll`` object each time; a byte read means the connection is discarded anyway."""
    try:
        os.read(sock.fileno(), 1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False            # closed by slurmrestd (b""), or a byte nobody asked for


def _tls_context() -> ssl.SSLContext:
    """urllib3's own defaults: TLS 1.2 or newer, certificates checked against the
    system's CAs, the host name checked."""
    from urllib3.util.ssl_ import create_urllib3_context

    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_default_certs()
    context.check_hostname = True
    return context
