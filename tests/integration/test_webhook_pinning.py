"""Webhooks connect to the address that passed the SSRF check, with TLS verified
against the URL's hostname: a real HTTPS server on loopback (its certificate from a
test CA, for a hostname), and a resolver standing in for DNS that answers differently
on each call, as a rebinding attacker's name server would."""
from __future__ import annotations

import socket
import ssl

import pytest
import trustme
from pytest_httpserver import HTTPServer

from app.errors import NotificationError
from app.notify import PermanentNotificationError
from app.config import network_list
from app.notify.webhook import SIGNATURE_HEADER, WebhookNotifier, verify

SECRET = "pinning-secret"
EVENT = {"event": "task.state", "state": "COMPLETED", "delivery_id": "d1",
         "task": {"uuid": "u", "name": "generic", "username": "someone"}}


class RebindingResolver:
    """Answers with each address in turn (the last one from then on)."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.calls: list[str] = []

    def __call__(self, host, port, *args, **kwargs):
        self.calls.append(host)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        addresses = answer.split(",")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


@pytest.fixture
def ca(tmp_path):
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, str(path)


def https_server(authority, hostname: str) -> HTTPServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert(hostname).configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    return server


@pytest.fixture
def hooks_server(ca):
    server = https_server(ca[0], "hooks.test")
    yield server
    server.clear()
    server.stop()


def notifier(resolver, ca_file) -> WebhookNotifier:
    return WebhookNotifier(SECRET, False, 5.0, network_list("127.0.0.0/8"), resolver=resolver,
                           ca_certs=ca_file)


def test_the_post_goes_to_the_checked_address_with_tls_verified_for_the_hostname(ca, hooks_server):
    hooks_server.expect_oneshot_request("/hook", method="POST",
                                        headers={"Host": f"hooks.test:{hooks_server.port}"}
                                        ).respond_with_data("ok")
    # First answer: loopback (allowed here); any later one: an address the check refuses.
    resolver = RebindingResolver("127.0.0.1", "10.0.0.1")
    notifier(resolver, ca[1]).send(EVENT, {}, f"https://hooks.test:{hooks_server.port}/hook", "d1")
    assert resolver.calls == ["hooks.test"]            # resolved once, for check and connect
    (request, response), = hooks_server.log
    assert response.status_code == 200
    assert verify(SECRET, request.headers[SIGNATURE_HEADER], request.get_data())


def test_a_certificate_for_another_name_is_refused(ca):
    server = https_server(ca[0], "other.test")
    try:
        server.expect_request("/hook").respond_with_data("ok")
        with pytest.raises(NotificationError, match="TLS verification failed"):
            notifier(RebindingResolver("127.0.0.1"), ca[1]).send(
                EVENT, {}, f"https://hooks.test:{server.port}/hook", "d1")
        assert server.log == []                        # nothing was sent to it
    finally:
        server.stop()


def test_an_untrusted_certificate_is_refused(ca, hooks_server, tmp_path):
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    hooks_server.expect_request("/hook").respond_with_data("ok")
    with pytest.raises(NotificationError, match="TLS"):
        notifier(RebindingResolver("127.0.0.1"), str(other_ca)).send(
            EVENT, {}, f"https://hooks.test:{hooks_server.port}/hook", "d1")
    assert hooks_server.log == []


def test_an_internal_answer_is_refused_before_any_connection(ca, hooks_server):
    resolver = RebindingResolver("10.0.0.1", "127.0.0.1")
    with pytest.raises(PermanentNotificationError, match="internal address"):
        notifier(resolver, ca[1]).send(EVENT, {}, f"https://hooks.test:{hooks_server.port}/h", "d1")
    assert resolver.calls == ["hooks.test"] and hooks_server.log == []
    # One refused address among several refuses the URL, too.
    with pytest.raises(PermanentNotificationError):
        notifier(RebindingResolver("127.0.0.1,10.0.0.1"), ca[1]).send(
            EVENT, {}, f"https://hooks.test:{hooks_server.port}/h", "d1")
    assert hooks_server.log == []


def test_the_next_checked_address_is_tried_when_one_refuses_connections(ca, hooks_server):
    hooks_server.expect_oneshot_request("/hook", method="POST").respond_with_data("ok")
    # Nothing listens on 127.0.0.2 at that port (the server is bound to 127.0.0.1).
    notifier(RebindingResolver("127.0.0.2,127.0.0.1"), ca[1]).send(
        EVENT, {}, f"https://hooks.test:{hooks_server.port}/hook", "d1")
    assert len(hooks_server.log) == 1
    with pytest.raises(NotificationError, match="not reachable"):
        notifier(RebindingResolver("127.0.0.2"), ca[1]).send(
            EVENT, {}, f"https://hooks.test:{hooks_server.port}/hook", "d1")
