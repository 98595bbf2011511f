#!/usr/bin/env bash
# A real single-node Slurm cluster with slurmrestd, for development and tests.
#
#   scripts/dev-cluster.sh install        apt packages (Debian 12), users, config
#   scripts/dev-cluster.sh start          install if needed, then start every daemon
#   scripts/dev-cluster.sh stop|status
#   scripts/dev-cluster.sh token USER     print a 1-hour JWT for USER
#   scripts/dev-cluster.sh env            print the SLURM_* settings for the service
#
# Must run as root. It follows DESIGN.md §5: munge, slurmctld, slurmd and slurmrestd
# (as an unprivileged user, JWT auth) on 127.0.0.1, a partition "hpcz-test" (the name
# the reference README's examples use) and an ordinary user "someone" to submit as,
# plus a second one, "eve", for the tests that prove one user never sees another's
# jobs (PrivateData=jobs: Slurm itself hides other users' jobs from each user).
# It writes /etc/slurm/slurm.conf only if none exists or the one there is its own.
set -euo pipefail

STATE=${DEV_CLUSTER_STATE:-/var/lib/slurm-proxy-dev}
LOGS=$STATE/log
CONF=/etc/slurm/slurm.conf
JWT_KEY=/etc/slurm/jwt_hs256.key
REST_USER=slurmrest
DEV_USER=${DEV_CLUSTER_USER:-someone}
OTHER_USER=${DEV_CLUSTER_OTHER_USER:-eve}
REST_ADDR=${DEV_CLUSTER_REST_ADDR:-127.0.0.1:6820}
MARK="# written by slurm-proxy scripts/dev-cluster.sh"
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client slurmrestd slurm-wlm-jwt-plugin munge
          slurm-wlm-elasticsearch-plugin)
# slurmctld posts each finished job to the service (jobcomp/elasticsearch, DESIGN.md §8)
# on this port: scripts/start.sh's. The secret is made once, kept root-only.
EVENTS_PORT=${DEV_CLUSTER_EVENTS_PORT:-5001}
EVENT_SECRET_FILE=/etc/slurm/slurm-proxy-event-secret

die() { echo "dev-cluster: $*" >&2; exit 1; }
log() { echo "dev-cluster: $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root"

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    fi
}

ensure_users() {
    id "$REST_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$REST_USER"
    id "$DEV_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$DEV_USER"
    id "$OTHER_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$OTHER_USER"
}

write_config() {
    mkdir -p /etc/slurm "$STATE" "$LOGS" /var/spool/slurmctld /var/spool/slurmd /run/munge
    chown slurm:slurm /var/spool/slurmctld "$LOGS"
    chown munge:munge /run/munge
    if [ ! -s "$JWT_KEY" ]; then
        head -c 32 /dev/urandom > "$JWT_KEY"
    fi
    chown slurm:slurm "$JWT_KEY"; chmod 0600 "$JWT_KEY"
    if [ ! -s /etc/munge/munge.key ]; then
        head -c 1024 /dev/urandom > /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
    fi
    if [ ! -s "$EVENT_SECRET_FILE" ]; then
        (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$EVENT_SECRET_FILE")
    fi
    if [ -e "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARK"; then
        log "keeping the existing $CONF (not written by this script)"
        return
    fi
    local cpus=8 mem=8000
    cat > "$CONF" <<EOF
$MARK
ClusterName=dev
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerParameters=batch_sched_delay=0
MinJobAge=300
SlurmdParameters=config_overrides
MailProg=/bin/true
PrivateData=jobs
JobCompType=jobcomp/elasticsearch
JobCompLoc=http://default:$(cat "$EVENT_SECRET_FILE")@127.0.0.1:$EVENTS_PORT/events/slurm/jobcomp
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=hpcz-test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

install_all() { install_packages; ensure_users; write_config; }

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2; shift 2
    for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "$what did not come up within ${secs}s (logs in $LOGS)"
}

start() {
    install_all
    # Daemons keep the directory they start in: never the caller's (a checkout that
    # may be deleted; slurmrestd then fails submits with "getcwd failed").
    cd "$STATE"
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
    fi
    wait_for 10 munge munge -n
    if ! pid_alive "$STATE/slurmctld.pid"; then
        /usr/sbin/slurmctld -i
    fi
    wait_for 20 slurmctld scontrol ping
    if ! pid_alive "$STATE/slurmd.pid"; then
        /usr/sbin/slurmd -N localhost
    fi
    wait_for 20 "node localhost" bash -c "sinfo -h -n localhost -o %t | grep -qE '^(idle|mix|alloc)'"
    if ! pid_alive "$STATE/slurmrestd.pid"; then
        # slurmrestd refuses to run as root; -s limits the plugins so it does not
        # load the accounting ones (which need slurmdbd).
        setpriv --reuid="$REST_USER" --regid="$REST_USER" --init-groups \
            env SLURM_JWT=daemon /usr/sbin/slurmrestd -a rest_auth/jwt \
            -s openapi/v0.0.36,openapi/v0.0.37,openapi/v0.0.38 "$REST_ADDR" \
            >>"$LOGS/slurmrestd.log" 2>&1 </dev/null &
        echo $! > "$STATE/slurmrestd.pid"
    fi
    wait_for 20 slurmrestd bash -c "curl -s -o /dev/null -w '%{http_code}' http://$REST_ADDR/openapi/v3 | grep -qv '^000'"
    log "up: slurmctld, slurmd, slurmrestd on http://$REST_ADDR, partition hpcz-test, user $DEV_USER"
}

stop() {
    for d in slurmrestd slurmd slurmctld; do
        if pid_alive "$STATE/$d.pid"; then kill "$(cat "$STATE/$d.pid")" || true; fi
        rm -f "$STATE/$d.pid"
    done
    pkill -x slurmrestd 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    # Wait until they are gone, so that a start right after does not find one exiting.
    for _ in $(seq 100); do
        pgrep -x 'slurmctld|slurmd|slurmrestd|munged' >/dev/null || break
        sleep 0.1
    done
    log "stopped"
}

status() {
    local rc=0
    for d in slurmctld slurmd slurmrestd; do
        if pid_alive "$STATE/$d.pid"; then echo "$d: running (pid $(cat "$STATE/$d.pid"))"
        else echo "$d: stopped"; rc=3; fi
    done
    pgrep -x munged >/dev/null && echo "munged: running" || { echo "munged: stopped"; rc=3; }
    return $rc
}

token() {
    local user=${1:?usage: token USER}
    scontrol token username="$user" lifespan=3600 | sed -n 's/^SLURM_JWT=//p'
}

print_env() {
    cat <<EOF
SLURM_BASE_URL=http://$REST_ADDR
SLURM_API_VERSION=auto
SLURM_JWT_HS256_KEY_FILE=$JWT_KEY
SLURM_EVENT_SECRET=$(cat "$EVENT_SECRET_FILE" 2>/dev/null)
EOF
}

case "${1:-}" in
    install) install_all ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    token) shift; token "$@" ;;
    env) print_env ;;
    *) echo "usage: $0 install|start|stop|restart|status|token USER|env" >&2; exit 2 ;;
esac
