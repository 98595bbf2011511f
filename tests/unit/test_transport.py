"""The HTTP transport to slurmrestd against a real local HTTP server: what is retried,
what never is, and what each failure becomes. A submit that may have reached
slurmrestd must never be sent twice (it would start the job twice)."""
from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
from werkzeug import Response

from app.batch import build_submission
from app.config import SlurmAuth
from app.errors import SlurmTimeout, SlurmUnavailable
from app.slurm.client import SlurmClient
from app.slurm.transport import Transport
from tests.unit.test_adapters import _plan

PREFIX = "/slurm/v0.0.38"


def client_for(httpserver, read_timeout=5.0) -> SlurmClient:
    auth = SlurmAuth("token", "slurm", token="t")
    return SlurmClient(Transport(httpserver.url_for("").rstrip("/"), auth, connect_timeout=1,
                                 read_timeout=read_timeout), "0.0.38")


def slow(seconds, body='{"pings": []}'):
    def handler(request):
        time.sleep(seconds)
        return Response(body, content_type="application/json")
    return handler


def count(httpserver, path, settle=0.0):
    time.sleep(settle)
    return sum(1 for request, _ in httpserver.log if request.path == path)


def test_a_submit_without_an_answer_in_time_is_sent_once(httpserver):
    httpserver.expect_request(f"{PREFIX}/job/submit", method="POST").respond_with_handler(
        slow(0.6, '{"job_id": 1}'))
    with pytest.raises(SlurmTimeout, match="did not answer POST"):
        client_for(httpserver, read_timeout=0.2).submit(build_submission(_plan()), user="someone")
    assert count(httpserver, f"{PREFIX}/job/submit", settle=1.0) == 1


def test_a_submit_answered_503_is_not_sent_again(httpserver):
    httpserver.expect_request(f"{PREFIX}/job/submit", method="POST").respond_with_data(
        "busy", status=503)
    with pytest.raises(SlurmUnavailable):
        client_for(httpserver).submit(build_submission(_plan()), user="someone")
    assert count(httpserver, f"{PREFIX}/job/submit") == 1


def test_reads_are_retried_on_503_and_then_answer(httpserver):
    for _ in range(2):
        httpserver.expect_ordered_request(f"{PREFIX}/ping").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request(f"{PREFIX}/ping").respond_with_json(
        {"pings": [{"hostname": "c1", "ping": "UP", "mode": "primary"}]})
    [ping] = client_for(httpserver).ping()
    assert ping.up and ping.hostname == "c1"
    assert count(httpserver, f"{PREFIX}/ping") == 3


def test_a_read_without_an_answer_is_retried_then_times_out(httpserver):
    httpserver.expect_request(f"{PREFIX}/ping").respond_with_handler(slow(0.5))
    with pytest.raises(SlurmTimeout):
        client_for(httpserver, read_timeout=0.15).ping()
    assert count(httpserver, f"{PREFIX}/ping", settle=1.0) == 3      # 1 + 2 read retries


def test_nothing_listening_is_unavailable_not_a_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    auth = SlurmAuth("token", "slurm", token="t")
    client = SlurmClient(Transport(f"http://127.0.0.1:{port}", auth), "0.0.38")
    with pytest.raises(SlurmUnavailable, match="not reachable"):
        client.submit(build_submission(_plan()), user="someone")


def test_query_parameters_and_json_bodies_go_out_as_slurmrestd_expects(httpserver):
    httpserver.expect_request("/slurm/v0.0.42/jobs/state", query_string={"job_id": "1,2,3"}
                              ).respond_with_json({"jobs": [{"job_id": "1", "state": ["RUNNING"]}]})
    auth = SlurmAuth("token", "slurm", token="t")
    client = SlurmClient(Transport(httpserver.url_for("").rstrip("/"), auth), "0.0.42")
    assert client.get_job_states([3, 1, 2]) == {1: ("RUNNING", ())}


class CountingSocket:
    def __init__(self, sock, writes):
        self._sock, self._writes = sock, writes

    def sendall(self, data, *args):
        self._writes.append(bytes(data))
        return self._sock.sendall(data, *args)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def counting(client, writes, connects):
    """Count the connections the client opens and the writes on them."""
    pool = client.transport.pool
    connect = pool.connect

    def counted():
        connects.append(1)
        return CountingSocket(connect(), writes)

    pool.connect = counted
    return client


def test_a_request_goes_out_in_one_write_and_arrives_whole(httpserver):
    """Head and body in one write (one packet, one wake-up of slurmrestd), and the
    server still reads the same request: headers, token and JSON body."""
    writes: list[bytes] = []
    connects: list[int] = []
    httpserver.expect_request(f"{PREFIX}/job/submit", method="POST").respond_with_json(
        {"job_id": 42, "errors": [], "warnings": []})
    client = counting(client_for(httpserver), writes, connects)
    submission = build_submission(_plan())
    assert client.submit(submission, user="someone") == 42
    assert client.submit(submission, user="someone") == 42      # a reused connection too
    assert len(writes) == 2 and all(w.startswith(b"POST ") for w in writes)
    head, _, body = writes[0].partition(b"\r\n\r\n")
    assert b"\r\nContent-Length: %d\r\n" % len(body) in head
    [(request, _), _] = httpserver.log
    assert request.headers["X-SLURM-USER-NAME"] == "someone"
    assert request.headers["X-SLURM-USER-TOKEN"] == "t"
    assert request.headers["Host"] == httpserver.url_for("").split("//")[1].rstrip("/")
    assert request.get_data() == body and request.get_json()["job"]["current_working_directory"]


def test_a_base_url_with_a_path_keeps_it(httpserver):
    """slurmrestd behind a reverse proxy under a path: every request goes below it."""
    httpserver.expect_request(f"/behind/proxy{PREFIX}/ping").respond_with_json(
        {"pings": [{"hostname": "c1", "ping": "UP", "mode": "primary"}]})
    auth = SlurmAuth("token", "slurm", token="t")
    client = SlurmClient(Transport(httpserver.url_for("/behind/proxy/"), auth), "0.0.38")
    [ping] = client.ping()
    assert ping.up and ping.hostname == "c1"


# -- the connection to slurmrestd: keep-alive, closing, chunked, TLS ---------------------
@pytest.fixture
def keepalive():
    """werkzeug's HTTP/1.1 server, threaded: it answers chunked when a body has no
    length (it closes every connection, so keep-alive is tested with ``Peer`` below)."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


PING = {"pings": [{"hostname": "c1", "ping": "UP", "mode": "primary"}]}


def test_a_chunked_answer_is_read_whole(keepalive):
    body = json.dumps({"job_id": 9, "errors": [], "padding": "x" * 200_000})

    def chunked(request):
        return Response((body[i:i + 7000] for i in range(0, len(body), 7000)),
                        content_type="application/json")      # no length: chunked

    keepalive.expect_request(f"{PREFIX}/job/submit", method="POST").respond_with_handler(chunked)
    keepalive.expect_request(f"{PREFIX}/ping").respond_with_json(PING)
    client = client_for(keepalive)
    assert client.submit(build_submission(_plan()), user="someone") == 9
    assert client.ping()[0].up


def test_a_large_answer_arrives_whole(keepalive):
    jobs = {"jobs": [], "errors": [], "padding": ["y" * 1000] * 3000}       # ~3 MB
    keepalive.expect_request(f"{PREFIX}/jobs").respond_with_json(jobs)
    transport = client_for(keepalive).transport
    assert transport.request("GET", f"{PREFIX}/jobs").json == jobs


class Peer:
    """A bare TCP peer that speaks HTTP/1.1 as each test scripts it: ``script(conn,
    request_bytes)`` per request received; it records every request."""

    def __init__(self, script, tls=None):
        self.script, self.requests, self.connections = script, [], 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.tls = tls                    # an ssl.SSLContext: https, each connection wrapped
        self.url = f"{'https' if tls else 'http'}://" + (
            f"{'localhost' if tls else '127.0.0.1'}:{self.listener.getsockname()[1]}")
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:
                    conn.close()
                    continue
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn):
        with conn:
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
                head, sep, rest = data.partition(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1)) if b"Content-Length" in head else 0
                if not sep or len(rest) < length:
                    continue
                request, data = head + sep + rest[:length], rest[length:]
                self.requests.append(request)
                if self.script(conn, request) == "close":
                    return

    def count(self, method):
        return sum(1 for r in self.requests if r.startswith(method.encode() + b" "))

    def close(self):
        self.listener.close()


def answer(conn, body=b'{"job_id": 5, "errors": []}', extra=b""):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                 % (len(body), extra, body))


def peer_client(peer, read_timeout=5.0):
    auth = SlurmAuth("token", "slurm", token="t")
    return SlurmClient(Transport(peer.url, auth, connect_timeout=1, read_timeout=read_timeout),
                       "0.0.38")


def test_requests_share_one_kept_alive_connection():
    def script(conn, request):
        if request.startswith(b"GET "):
            answer(conn, json.dumps(PING).encode())
        else:
            answer(conn)

    peer = Peer(script)
    try:
        client = peer_client(peer)
        for _ in range(3):
            assert client.ping()[0].up
            assert client.submit(build_submission(_plan()), user="someone") == 5
        assert peer.count("GET") == 3 and peer.count("POST") == 3 and peer.connections == 1
    finally:
        peer.close()


def test_an_answer_with_connection_close_ends_that_connection():
    """slurmrestd says ``Connection: close``: the next request goes on a new
    connection, even if that one stayed open."""
    peer = Peer(lambda conn, request: answer(conn, json.dumps(PING).encode(),
                                             b"Connection: close\r\n"))
    try:
        client = peer_client(peer)
        assert client.ping()[0].up and client.ping()[0].up
        assert peer.connections == 2
    finally:
        peer.close()


def test_a_chunked_answer_then_the_next_request_on_the_same_connection():
    """Chunks (with an extension and a trailer, as HTTP/1.1 allows) end exactly where
    the answer ends: the connection carries the next request."""
    def script(conn, request):
        if request.startswith(b"POST "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         b"5;ext=1\r\n{\"job\r\n17\r\n_id\": 12, \"errors\": []}\r\n"
                         b"0\r\nX-Trailer: yes\r\n\r\n")
        else:
            answer(conn, json.dumps(PING).encode())

    peer = Peer(script)
    try:
        client = peer_client(peer)
        assert client.submit(build_submission(_plan()), user="someone") == 12
        assert client.ping()[0].up
        assert peer.connections == 1
    finally:
        peer.close()


def test_a_connection_slurmrestd_closed_while_idle_is_not_used_for_a_submit():
    """slurmrestd closes an idle kept-alive connection (a restart, its own timeout):
    the next submit goes out once, on a new connection, and succeeds."""
    def script(conn, request):
        answer(conn)
        return "close"              # closes after answering, without saying so

    peer = Peer(script)
    client = peer_client(peer)
    try:
        submission = build_submission(_plan())
        assert client.submit(submission, user="someone") == 5
        time.sleep(0.2)             # the close has arrived
        assert client.submit(submission, user="someone") == 5
        assert peer.count("POST") == 2 and peer.connections == 2
    finally:
        peer.close()


def test_a_submit_whose_connection_breaks_before_the_answer_is_not_sent_again():
    peer = Peer(lambda conn, request: "close")          # reads the submit, never answers
    client = peer_client(peer)
    try:
        with pytest.raises(SlurmTimeout, match="broke during POST"):
            client.submit(build_submission(_plan()), user="someone")
        time.sleep(0.3)
        assert peer.count("POST") == 1
    finally:
        peer.close()


def test_a_read_whose_connection_breaks_is_asked_again():
    def script(conn, request):
        if len(peer.requests) == 1:
            return "close"                              # the first one: no answer
        answer(conn, json.dumps(PING).encode())

    peer = Peer(script)
    try:
        assert peer_client(peer).ping()[0].up
        assert peer.count("GET") == 2
    finally:
        peer.close()


def test_an_answer_cut_short_is_a_broken_connection_and_a_submit_is_not_resent():
    def script(conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"job_id\": 5")
        return "close"

    peer = Peer(script)
    try:
        with pytest.raises(SlurmTimeout, match="broke during POST"):
            peer_client(peer).submit(build_submission(_plan()), user="someone")
        time.sleep(0.3)
        assert peer.count("POST") == 1
    finally:
        peer.close()


def test_an_http_1_0_answer_without_keep_alive_closes_the_connection():
    def script(conn, request):
        body = json.dumps(PING).encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    peer = Peer(script)
    try:
        client = peer_client(peer)
        assert client.ping()[0].up and client.ping()[0].up
        assert peer.connections == 2
    finally:
        peer.close()


def test_an_answer_without_length_is_read_to_the_end_of_the_connection():
    def script(conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                     + json.dumps(PING).encode())
        return "close"

    peer = Peer(script)
    try:
        assert peer_client(peer).ping()[0].up
    finally:
        peer.close()


def test_big_answers_share_one_body_buffer_and_nothing_read_points_into_it():
    """Job lists (``BIG_BODY`` or more) are received into one buffer kept between
    answers: each reads whole, and what was read from one (its jobs, read the typed
    way or, with odd types, from undecoded JSON later; its JSON; its text) stays
    intact once the next answer has overwritten the buffer."""
    from app.slurm.connections import BIG_BODY
    from app.slurm.versions.base import decode_job_list
    from tests.unit.test_adapters import Recorded

    job = Recorded("slurm-22.05", "0.0.38").body("job_completed")["jobs"][0]
    many = 1 + BIG_BODY // len(json.dumps(job))
    typed = {"jobs": [dict(job, job_id=i) for i in range(1, many + 1)]}
    odd = {"jobs": [dict(job, job_id=str(i)) for i in range(1, many + 1)]}   # read later
    bodies = {b"/typed": json.dumps(typed).encode(), b"/odd": json.dumps(odd).encode(),
              b"/plain": json.dumps({"padding": "p" * BIG_BODY}).encode(),
              b"/text": b"t" * BIG_BODY}

    def script(conn, request):
        path = request.split(b" ")[1].replace(PREFIX.encode(), b"")
        body = bodies[path]
        kind = b"text/plain" if path == b"/text" else b"application/json"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                     % (kind, len(body), body))

    peer = Peer(script)
    try:
        client = peer_client(peer)
        transport, adapter = client.transport, client.adapter
        got = {path: transport.request("GET", PREFIX + path, decode=decode).body
               for path, decode in (("/odd", decode_job_list), ("/typed", decode_job_list),
                                    ("/plain", None), ("/text", None))}
        assert adapter.parse_jobs(got["/odd"]) == adapter.parse_jobs(odd)
        assert adapter.parse_jobs(got["/typed"]) == adapter.parse_jobs(typed)
        assert got["/plain"] == json.loads(bodies[b"/plain"])
        assert got["/text"] == bodies[b"/text"].decode()
        assert len(transport.pool.bodies._spare) == 1 and peer.connections == 1
    finally:
        peer.close()


def test_slurmrestd_over_https_is_verified_against_the_trusted_authorities(tmp_path, monkeypatch):
    """https:// works with a CA the system trusts (here SSL_CERT_FILE, as OpenSSL reads
    it), and a server whose certificate no trusted CA signed is refused, unsent."""
    import ssl

    import trustme
    from pytest_httpserver import HTTPServer

    authority = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("localhost").configure_cert(server_context)
    server = HTTPServer(host="localhost", ssl_context=server_context, threaded=True)
    server.expect_request(f"{PREFIX}/ping").respond_with_json(PING)
    server.start()
    try:
        auth = SlurmAuth("token", "slurm", token="t")
        url = f"https://localhost:{server.port}"
        with pytest.raises(SlurmUnavailable):       # not trusted (yet): refused
            SlurmClient(Transport(url, auth, connect_timeout=1), "0.0.38").ping()
        assert server.log == []
        ca_file = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        client = SlurmClient(Transport(url, auth, connect_timeout=1), "0.0.38")
        assert client.ping()[0].up
    finally:
        server.stop()


def test_over_https_requests_share_one_kept_alive_connection(tmp_path, monkeypatch):
    """https connections are kept alive too (a TLS handshake per request would cost
    more than the request), TLS 1.3's session tickets after the handshake included."""
    import ssl

    import trustme

    authority = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.minimum_version = ssl.TLSVersion.TLSv1_3
    authority.issue_cert("localhost").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))

    def script(conn, request):
        answer(conn, json.dumps(PING).encode()) if request.startswith(b"GET ") else answer(conn)

    peer = Peer(script, tls=server_context)
    try:
        client = peer_client(peer)
        for _ in range(3):
            assert client.ping()[0].up
            time.sleep(0.05)                # the connection idles between requests
            assert client.submit(build_submission(_plan()), user="someone") == 5
        assert peer.count("GET") == 3 and peer.count("POST") == 3 and peer.connections == 1
    finally:
        peer.close()
