#!/bin/sh
# Start slurm-proxy's programs under supervisord: the same script in the container and
# outside it (the tests run it with paths from the environment).
set -eu
: "${SLURM_PROXY_APP_DIR:=/app}"
: "${SLURM_PROXY_LOG_DIR:=/var/log/slurm-proxy}"
: "${PROMETHEUS_MULTIPROC_DIR:=/tmp/slurm-proxy-metrics}"
export SLURM_PROXY_APP_DIR SLURM_PROXY_LOG_DIR PROMETHEUS_MULTIPROC_DIR
# Metrics files of a previous run would be added to this run's.
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR" "$SLURM_PROXY_LOG_DIR"
exec supervisord -c "$SLURM_PROXY_APP_DIR/docker/supervisord.conf"
