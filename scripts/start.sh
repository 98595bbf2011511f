#!/usr/bin/env bash
# One command, on a fresh Debian 12 machine as root: install everything, start the
# local single-node Slurm with slurmrestd, and start slurm-proxy on port 5001.
#
#   scripts/start.sh          set up, start Slurm and the service (in the background)
#   scripts/start.sh stop     stop the service (the cluster keeps running)
#
# Without MONGODB_URI the service keeps its records in an embedded in-memory store
# (it says so loudly in logs/service.log); set MONGODB_URI in .env for real use.
# Without NOTIFICATIONS_SMTP_HOST (environment or .env) it also starts a local mail
# catcher (aiosmtpd on 127.0.0.1:8025) and sends mail there: each message is a file in
# logs/maildir/new/. Set NOTIFICATIONS_SMTP_* in .env to use a real SMTP server.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${SLURM_PROXY_PORT:-5001}
PIDFILE=logs/service.pid
MAIL_PORT=${SLURM_PROXY_MAIL_CATCHER_PORT:-8025}
MAIL_PIDFILE=logs/mail-catcher.pid

if [ "${1:-}" = "stop" ]; then
    if [ -s "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null; then
        # gunicorn finishes requests in flight first; wait until it has let go of the port.
        for _ in $(seq 350); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
        echo "slurm-proxy stopped"
    else
        echo "slurm-proxy was not running"
    fi
    rm -f "$PIDFILE"
    if [ -s "$MAIL_PIDFILE" ] && kill "$(cat "$MAIL_PIDFILE")" 2>/dev/null; then
        echo "mail catcher stopped"
    fi
    rm -f "$MAIL_PIDFILE"
    exit 0
fi

scripts/setup.sh
scripts/dev-cluster.sh start
mkdir -p logs
# No SMTP server configured: a local mail catcher, so a newcomer sees the mail.
if [ -z "${NOTIFICATIONS_SMTP_HOST:-}" ] && ! grep -qs "^NOTIFICATIONS_SMTP_HOST=." .env; then
    if ! { [ -s "$MAIL_PIDFILE" ] && kill -0 "$(cat "$MAIL_PIDFILE")" 2>/dev/null; }; then
        # Maildir makes logs/maildir/{tmp,new,cur} when logs/maildir does not exist yet.
        [ -d logs/maildir/new ] || rm -rf logs/maildir
        nohup .venv/bin/python -m aiosmtpd -n -l "127.0.0.1:$MAIL_PORT" \
            -c aiosmtpd.handlers.Mailbox logs/maildir >>logs/mail-catcher.log 2>&1 &
        echo $! > "$MAIL_PIDFILE"
        echo "mail goes to a local catcher on 127.0.0.1:$MAIL_PORT: one file per message in logs/maildir/new/"
    fi
    export NOTIFICATIONS_SMTP_HOST=127.0.0.1 NOTIFICATIONS_SMTP_PORT=$MAIL_PORT \
        NOTIFICATIONS_SMTP_SECURITY=none
fi
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "slurm-proxy already running (pid $(cat "$PIDFILE")) on port $PORT"
    exit 0
fi
# The dev cluster's settings, unless .env or the environment already says otherwise.
while IFS='=' read -r key value; do
    if [ -z "${!key:-}" ] && ! grep -qs "^$key=" .env; then export "$key=$value"; fi
done < <(scripts/dev-cluster.sh env)
export SLURM_PROXY_PORT=$PORT
# On the dev cluster the service may read a task's own output files in its user's home.
export SLURM_PROXY_OUTPUT_PREFIXES=${SLURM_PROXY_OUTPUT_PREFIXES:-/home/{username\}}
# An API key for the README's examples: acts for the dev cluster's user "someone",
# every role; the key is in .dev-api-key (0600), its hash in api-keys.json.
if [ ! -s .dev-api-key ] || [ ! -s "${SLURM_PROXY_API_KEYS_FILE:-api-keys.json}" ]; then
    (umask 077; .venv/bin/python -m app.keys create --name dev --users someone \
        --roles submit,read,cancel,admin --quiet > .dev-api-key)
    echo "created an API key for user someone (shown once here; kept in .dev-api-key): $(cat .dev-api-key)"
fi
nohup .venv/bin/gunicorn -c docker/gunicorn.conf.py wsgi:app >>logs/service.log 2>&1 &
echo $! > "$PIDFILE"
for _ in $(seq 100); do
    if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
        echo "slurm-proxy is up on http://127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log logs/service.log)"
        echo "web page: http://127.0.0.1:$PORT/ui/ (sign in with the key in .dev-api-key)"
        exit 0
    fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.1
done
echo "slurm-proxy did not start; last lines of logs/service.log:" >&2
tail -n 20 logs/service.log >&2
exit 1
