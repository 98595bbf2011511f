"""Real local peers for the notification tests: an aiosmtpd SMTP server, RabbitMQ,
and a "black hole" that accepts TCP connections and never answers."""
from __future__ import annotations

import email
import socket
import threading
import uuid as uuid_module
from email import policy

import pytest
import requests

from app.config import load_config

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """True once the service at ``url`` answers /healthz (for starting a real gunicorn)."""
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


class SMTPServer:
    def __init__(self):
        self.inbox = Inbox()
        self.port = free_port()
        self._controller = None

    def start(self):
        from aiosmtpd.controller import Controller

        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self):
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class BlackHole:
    """Accepts connections and says nothing: a peer that hangs mid-conversation."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.accepted.set()

    def close(self):
        for conn in self._conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def smtp():
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def rabbitmq():
    """A fresh exchange and queue on the local RabbitMQ, deleted afterwards."""
    pika = pytest.importorskip("pika")
    try:
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL + "?socket_timeout=2"))
    except Exception:  # noqa: BLE001 - any failure means: no broker here
        pytest.skip("no RabbitMQ at 127.0.0.1:5672 (run scripts/dev-services.sh start)")
    name = f"slurm-proxy-test-{uuid_module.uuid4().hex[:8]}"
    yield {"url": RABBITMQ_URL, "exchange": name, "queue": name}
    try:
        channel = connection.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)
        connection.close()
    except Exception:  # noqa: BLE001 - the broker may have been restarted by the test
        pass


def drain(queue: str) -> list[tuple]:
    """Every message now in ``queue``: (properties, body)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    out = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append((properties, body))
    connection.close()
    return out


def notify_config(*, smtp_port=None, rabbit=None, slack_url=None, webhook_secret=None,
                  **extra) -> dict:
    overrides = {"NOTIFICATIONS_SMTP_FROM": "slurm-proxy@cluster.example.org",
                 "NOTIFICATIONS_TIMEOUT": 5.0, "NOTIFICATIONS_SMTP_SECURITY": "none"}
    if smtp_port:
        overrides.update(NOTIFICATIONS_SMTP_HOST="127.0.0.1", NOTIFICATIONS_SMTP_PORT=smtp_port)
    if rabbit:
        overrides.update(NOTIFICATIONS_RABBITMQ_URL=rabbit["url"],
                         NOTIFICATIONS_RABBITMQ_EXCHANGE=rabbit["exchange"],
                         NOTIFICATIONS_RABBITMQ_QUEUE=rabbit["queue"])
    if slack_url:
        overrides.update(NOTIFICATIONS_SLACK_TOKEN="xoxb-test-token",
                         NOTIFICATIONS_SLACK_API_URL=slack_url,
                         NOTIFICATIONS_SLACK_DEFAULT_CHANNEL="#general")
    if webhook_secret:
        overrides.update(NOTIFICATIONS_WEBHOOK_SECRET=webhook_secret,
                         NOTIFICATIONS_WEBHOOK_ALLOW_HTTP=True,
                         NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8,::1/128")
    overrides.update(extra)
    return load_config({}, overrides)
