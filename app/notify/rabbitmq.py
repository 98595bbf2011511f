"""``rabbitmq`` (alias ``rabbithq``): a persistent JSON message, publisher-confirmed.

The exchange and queue are declared durable as configured, the queue bound with
NOTIFICATIONS_RABBITMQ_BINDING_KEY; messages are persistent (delivery_mode 2),
``mandatory`` (an unroutable message is an error, not a silent drop), and carry the
delivery id as ``message_id``. One connection per message keeps a broker restart from
poisoning a cached connection.
"""
from __future__ import annotations

import json

from marshmallow import Schema

from ..errors import NotificationError
from ..schemas.fields import Text
from .base import Notifier, PermanentNotificationError


class RabbitMQParams(Schema):
    routing_key = Text(max_length=255)
    msg = Text(max_length=20_000, multiline=True)


class RabbitMQNotifier(Notifier):
    name = "rabbitmq"
    aliases = ("rabbithq",)        # the reference README's spelling
    Params = RabbitMQParams
    registry_defaults = {"msg": "The {task} task has finished."}

    @classmethod
    def targets(cls, params):
        return [params.get("routing_key") or "default"]

    def __init__(self, url: str, exchange: str, exchange_type: str, queue: str,
                 binding_key: str, routing_key: str, timeout: float):
        self._url = url
        self.exchange, self.exchange_type, self.queue = exchange, exchange_type, queue
        self.binding_key, self.routing_key, self.timeout = binding_key, routing_key, timeout

    @classmethod
    def from_config(cls, config):
        if not config.get("NOTIFICATIONS_RABBITMQ_URL"):
            return None
        import pika  # noqa: F401 - fail at start-up if missing
        return cls(config["NOTIFICATIONS_RABBITMQ_URL"], config["NOTIFICATIONS_RABBITMQ_EXCHANGE"],
                   config["NOTIFICATIONS_RABBITMQ_EXCHANGE_TYPE"],
                   config["NOTIFICATIONS_RABBITMQ_QUEUE"],
                   config["NOTIFICATIONS_RABBITMQ_BINDING_KEY"],
                   config["NOTIFICATIONS_RABBITMQ_ROUTING_KEY"], config["NOTIFICATIONS_TIMEOUT"])

    def send(self, event, params, target, delivery_id):
        import pika
        from pika import exceptions as pe

        routing_key = self.routing_key if target == "default" else target
        parameters = pika.URLParameters(self._url)
        parameters.socket_timeout = self.timeout
        parameters.stack_timeout = self.timeout
        parameters.blocked_connection_timeout = self.timeout
        parameters.connection_attempts = 1
        body = json.dumps(event, sort_keys=True).encode()
        try:
            connection = pika.BlockingConnection(parameters)
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                channel.exchange_declare(self.exchange, exchange_type=self.exchange_type,
                                         durable=True)
                if self.queue:
                    channel.queue_declare(self.queue, durable=True)
                    channel.queue_bind(self.queue, self.exchange, routing_key=self.binding_key)
                channel.basic_publish(
                    self.exchange, routing_key, body, mandatory=True,
                    properties=pika.BasicProperties(
                        content_type="application/json", delivery_mode=2,
                        message_id=delivery_id, type="task.state", app_id="slurm-proxy"))
            finally:
                if connection.is_open:
                    connection.close()
        except pe.UnroutableError:
            raise PermanentNotificationError(
                f"RabbitMQ: no queue is bound for routing key {routing_key!r}") from None
        except pe.NackError:
            raise NotificationError("RabbitMQ refused the message (nack)") from None
        except pe.ProbableAuthenticationError:
            raise NotificationError("RabbitMQ refused the credentials") from None
        except (pe.AMQPError, OSError) as exc:
            raise NotificationError(f"RabbitMQ not usable: {exc.__class__.__name__}") from None
