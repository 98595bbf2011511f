#!/usr/bin/env bash
# The local peers the notification tests talk to, besides Slurm: RabbitMQ (Debian's
# rabbitmq-server). SMTP (aiosmtpd) and HTTP peers (pytest-httpserver) run inside
# the tests themselves. Run as root.
#
#   scripts/dev-services.sh start|stop|status|restart-rabbitmq
set -euo pipefail

log() { echo "dev-services: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }

rabbit_up() { rabbitmqctl -q await_startup --timeout 2 >/dev/null 2>&1; }

start() {
    if ! command -v rabbitmq-server >/dev/null; then
        log "installing rabbitmq-server"
        [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
    fi
    if ! rabbit_up; then
        # No systemd here: the Debian wrapper drops to the rabbitmq user itself.
        (cd /var/lib/rabbitmq && rabbitmq-server -detached >/dev/null 2>&1) || true
        for _ in $(seq 120); do rabbit_up && break; sleep 0.5; done
        rabbit_up || { log "RabbitMQ did not start (see /var/log/rabbitmq/)"; exit 1; }
    fi
    log "up: RabbitMQ on amqp://guest:guest@127.0.0.1:5672/"
}

case "${1:-}" in
    start) start ;;
    stop) rabbitmqctl -q stop >/dev/null 2>&1 || true; log "stopped" ;;
    status) rabbit_up && echo "rabbitmq: running" || { echo "rabbitmq: stopped"; exit 3; } ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
