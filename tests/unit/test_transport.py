"""The HTTP transport to slurmrestd against a real local HTTP server: what is retried,
what never is, and what each failure becomes. A submit that may have reached
slurmrestd must never be sent twice (it would start the job twice)."""
from __future__ import annotations

import socket
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


def test_a_request_goes_out_in_one_write_and_arrives_whole(httpserver):
    """Head and body in one write (one packet, one wake-up of slurmrestd), and the
    server still reads the same request: headers, token and JSON body."""
    from app.slurm.transport import OneWriteHTTPConnection

    writes: list[bytes] = []

    class Counting(OneWriteHTTPConnection):
        def connect(self):
            super().connect()
            self.sock = CountingSocket(self.sock, writes)

    httpserver.expect_request(f"{PREFIX}/job/submit", method="POST").respond_with_json(
        {"job_id": 42, "errors": [], "warnings": []})
    client = client_for(httpserver)
    client.transport.pool.ConnectionCls = Counting
    submission = build_submission(_plan())
    assert client.submit(submission, user="someone") == 42
    assert client.submit(submission, user="someone") == 42      # a reused connection too
    assert len(writes) == 2 and all(w.startswith(b"POST ") for w in writes)
    head, _, body = writes[0].partition(b"\r\n\r\n")
    assert b"\r\nContent-Length: %d\r\n" % len(body) in head
    [(request, _), _] = httpserver.log
    assert request.headers["X-SLURM-USER-NAME"] == "someone"
    assert request.headers["X-SLURM-USER-TOKEN"] == "t"
    assert request.get_data() == body and request.get_json()["job"]["current_working_directory"]


def test_a_base_url_with_a_path_keeps_it(httpserver):
    """slurmrestd behind a reverse proxy under a path: every request goes below it."""
    httpserver.expect_request(f"/behind/proxy{PREFIX}/ping").respond_with_json(
        {"pings": [{"hostname": "c1", "ping": "UP", "mode": "primary"}]})
    auth = SlurmAuth("token", "slurm", token="t")
    client = SlurmClient(Transport(httpserver.url_for("/behind/proxy/"), auth), "0.0.38")
    [ping] = client.ping()
    assert ping.up and ping.hostname == "c1"
