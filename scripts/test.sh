#!/usr/bin/env bash
# One command, on a fresh Debian 12 machine as root: install everything the tests
# need, start the local services (single-node Slurm with slurmrestd, RabbitMQ), run
# every test.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/dev-cluster.sh start
scripts/dev-services.sh start
exec .venv/bin/python -m pytest "$@"
